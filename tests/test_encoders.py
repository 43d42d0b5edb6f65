"""Encoders: shapes, masking of padding, and the modality dispatch."""

import pytest
import torch

from magma_teach.data.base import Modality, char_ids
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder, TextEncoder, encoder_for


def test_audio_encoder_ignores_padding():
    torch.manual_seed(0)
    enc = AudioEncoder(n_mels=10, dim=8, width=16)
    x = torch.randn(2, 10, 40)
    lengths = torch.tensor([40, 17])
    z = enc(x, lengths)
    x_garbage = x.clone()
    x_garbage[1, :, 17:] = 1e3  # whatever sits in the padding must not matter
    torch.testing.assert_close(enc(x_garbage, lengths), z)
    assert z.shape == (2, 8)


def test_text_encoder_ignores_padding_and_reads_any_script():
    torch.manual_seed(0)
    enc = TextEncoder(dim=8)
    ids, n = zip(*(char_ids(s, 24) for s in ["hello world", "привет мир", "नमस्ते दुनिया"]))
    x, lengths = torch.tensor(ids), torch.tensor(n)
    z = enc(x, lengths)
    x_garbage = x.clone()
    x_garbage[0, 11:] = 7
    torch.testing.assert_close(enc(x_garbage, lengths)[0], z[0])
    assert z.shape == (3, 8) and torch.isfinite(z).all()


def test_image_encoders_shapes():
    assert ImageEncoder(1, dim=12)(torch.randn(3, 1, 8, 16)).shape == (3, 12)
    assert ImageEncoder(3, dim=12, backbone="resnet18")(torch.randn(2, 3, 32, 32)).shape == (2, 12)


def test_classifier_reads_direction_only():
    phi = Classifier(dim=6, n_way=4)
    z = torch.randn(5, 6)
    torch.testing.assert_close(phi(z), phi(3.0 * z))
    assert phi(z).shape == (5, 4)


def test_encoder_for_dispatch_and_errors():
    audio = Modality("audio", torch.zeros(2, 40, 50), torch.tensor([50, 20]), torch.tensor([0, 1]))
    assert isinstance(encoder_for(audio), AudioEncoder)
    with pytest.raises(ValueError, match="modality"):
        encoder_for("smell", shape=(3,))
    with pytest.raises(ValueError, match="backbone"):
        ImageEncoder(backbone="vgg")
