"""Encoders: shapes, masking of padding, the modality dispatch, and that an example's embedding
depends on that example only (not on its batch or on other tasks under vmap)."""

import pytest
import torch

from magma_teach.data.base import MODALITY_KINDS, Modality, char_ids
from magma_teach.encoders import AudioEncoder, Classifier, ImageEncoder, TextEncoder, VectorEncoder, encoder_for


def test_audio_encoder_ignores_padding(device):
    torch.manual_seed(0)
    enc = AudioEncoder(n_mels=10, dim=8, width=16).to(device)
    x = torch.randn(2, 10, 40).to(device)
    lengths = torch.tensor([40, 17], device=device)
    z = enc(x, lengths)
    x_garbage = x.clone()
    x_garbage[1, :, 17:] = 1e3  # whatever sits in the padding must not matter
    torch.testing.assert_close(enc(x_garbage, lengths), z)
    assert z.shape == (2, 8)


def test_text_encoder_ignores_padding_and_reads_any_script(device):
    torch.manual_seed(0)
    enc = TextEncoder(dim=8).to(device)
    ids, n = zip(*(char_ids(s, 24) for s in ["hello world", "привет мир", "नमस्ते दुनिया"]))
    x, lengths = torch.tensor(ids, device=device), torch.tensor(n, device=device)
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


# ---------------------------------------------------------------- batch independence (issue 13, item 7)
def _image(n, g):
    return torch.randn(n, 1, 8, 16, generator=g), None


def _rgb(n, g):
    return torch.randn(n, 3, 32, 32, generator=g), None


def _audio(n, g):
    return torch.randn(n, 10, 40, generator=g), torch.randint(1, 41, (n,), generator=g)


def _text(n, g):
    return torch.randint(1, 200, (n, 24), generator=g), torch.randint(1, 25, (n,), generator=g)


def _vector(n, g):
    return torch.randn(n, 6, generator=g), None


def _embedding(n, g):
    return 3.0 * torch.randn(n, 8, generator=g), None


# Every encoder the package offers, with an input maker: (n, generator) -> (x, lengths or None).
ENCODERS = {
    "image-cnn": (lambda: ImageEncoder(1, dim=8), _image),
    "image-resnet18": (lambda: ImageEncoder(3, dim=8, backbone="resnet18"), _rgb),
    "audio": (lambda: AudioEncoder(n_mels=10, dim=8, width=16), _audio),
    "text": (lambda: TextEncoder(dim=8), _text),
    "vector": (lambda: VectorEncoder(6, dim=8), _vector),
    "classifier": (lambda: Classifier(dim=8, n_way=4), _embedding),
}


def _run(module, x, lengths):
    return module(x) if lengths is None else module(x, lengths)


def _on(batch, device):
    """An (x, lengths or None) pair drawn on the CPU, moved to ``device`` (the same numbers on every device)."""
    x, lengths = batch
    return x.to(device), None if lengths is None else lengths.to(device)


def _with_row(make, n, row, g):
    """A batch of n fresh examples whose row 0 is ``row`` (an (x, lengths) pair of batch size 1)."""
    x, lengths = make(n, g)
    x[0] = row[0][0]
    if lengths is not None:
        lengths[0] = row[1][0]
    return x, lengths


def test_every_encoder_kind_is_covered_by_the_invariance_tests():
    covered = {type(make()) for make, _ in ENCODERS.values()}
    assert {type(encoder_for(kind, shape=(6, 8, 16))) for kind in MODALITY_KINDS} <= covered
    assert Classifier in covered


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_embedding_does_not_depend_on_the_rest_of_the_batch(name, mode, device):
    torch.manual_seed(0)
    build, make = ENCODERS[name]
    module = build().train(mode == "train").to(device)
    g = torch.Generator().manual_seed(1)
    alone = make(1, g)
    with torch.no_grad():
        expected = _run(module, *_on(alone, device))[0]
        for n in (2, 5):  # other batch sizes and other companions, some of them far off in scale
            x, lengths = _on(_with_row(make, n, alone, g), device)
            x[1:] = x[1:] * 10 if x.is_floating_point() else x[1:]
            torch.testing.assert_close(_run(module, x, lengths)[0], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_embedding_does_not_depend_on_other_tasks_under_vmap(name, mode, device):
    torch.manual_seed(0)
    build, make = ENCODERS[name]
    module = build().train(mode == "train").to(device)
    g = torch.Generator().manual_seed(2)
    alone = make(1, g)
    with torch.no_grad():
        expected = _run(module, *_on(alone, device))[0]
        for _ in range(2):  # two different sets of companion tasks and examples
            tasks = [_on(_with_row(make, 3, alone, g) if t == 1 else make(3, g), device) for t in range(3)]
            x = torch.stack([t[0] for t in tasks])  # (T=3, B=3, ...)
            if tasks[0][1] is None:
                out = torch.func.vmap(module)(x)
            else:
                out = torch.func.vmap(module)(x, torch.stack([t[1] for t in tasks]))
            torch.testing.assert_close(out[1, 0], expected, atol=1e-5, rtol=1e-4)
            eager = torch.stack([_run(module, *t) for t in tasks])
            torch.testing.assert_close(out, eager, atol=1e-5, rtol=1e-4)


def test_resnet18_vmap_grad_over_tasks_matches_each_task_alone(device):
    torch.manual_seed(0)
    enc = ImageEncoder(3, dim=4, backbone="resnet18").to(device)
    params = {k: v.detach() for k, v in enc.named_parameters()}

    def loss(p, x):
        return torch.func.functional_call(enc, p, (x,)).pow(2).mean()

    x = torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(device)  # (T=2, B=2, C, H, W)
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for t in range(2):
        alone = torch.func.grad(loss)(params, x[t])
        for k in ("features.conv1.weight", "features.layer4.1.conv2.weight", "project.weight"):
            assert grads[k].shape == (2, *params[k].shape)
            torch.testing.assert_close(grads[k][t], alone[k], atol=1e-5, rtol=1e-4)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_resnet18_keeps_stored_batch_norm_statistics():
    # Weights trained with ordinary batch norm load as they are, and the frozen network computes
    # what that network computes in eval mode (its stored statistics, not the batch's).
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18(weights=None)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.num_batches_tracked.fill_(7)
    reference.fc = torch.nn.Identity()
    enc = ImageEncoder(3, dim=4, backbone="resnet18")
    enc.features.load_state_dict(reference.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.train().features(x), reference.eval()(x), atol=1e-5, rtol=1e-4)
    assert not any("bn" in k for k, _ in enc.named_parameters())  # nothing a step could move
