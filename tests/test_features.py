"""Frozen backbones (magma_teach.data.features): features computed once, cached, keyed by weights and data."""

import pytest
import torch
from torch import nn

from magma_teach.data import concept_world
from magma_teach.data.base import Modality
from magma_teach.data.features import extract_features, image_backbone, with_features


class CountingLinear(nn.Module):
    """A linear map that counts how often it ran."""

    def __init__(self, d_in=12, d_out=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(d_in, d_out)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x.flatten(1))


def _images(n=10):
    return Modality("image", torch.rand(n, 3, 2, 2), torch.ones(n), torch.arange(n) % 3)


def test_features_are_the_backbone_output_in_batches(tmp_path):
    images, net = _images(), CountingLinear()
    out = extract_features(images, net, batch_size=4, cache_dir=tmp_path, progress=False)
    assert out.kind == "vector" and out.x.shape == (10, 4) and net.calls == 3  # 4 + 4 + 2
    torch.testing.assert_close(out.x, net.linear(images.x.flatten(1)))
    assert torch.equal(out.labels, images.labels) and torch.equal(out.lengths, torch.ones(10))


def test_cached_features_are_reused_and_keyed_by_weights_and_data(tmp_path):
    images, net = _images(), CountingLinear()
    first = extract_features(images, net, cache_dir=tmp_path, progress=False)
    again = extract_features(images, net, cache_dir=tmp_path, progress=False)
    assert net.calls == 1 and torch.equal(first.x, again.x)  # second call read the cache
    other = CountingLinear(seed=1)
    extract_features(images, other, cache_dir=tmp_path, progress=False)
    assert other.calls == 1  # other weights: computed anew
    changed = Modality("image", images.x + 1, images.lengths, images.labels)
    extract_features(changed, net, cache_dir=tmp_path, progress=False)
    assert net.calls == 2  # other data: computed anew
    assert len(list((tmp_path / "features").glob("*.pt"))) == 3


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    images, net = _images(), CountingLinear()
    extract_features(images, net, cache_dir=tmp_path, progress=False)
    (path,) = (tmp_path / "features").glob("*.pt")
    path.write_bytes(b"garbage")
    out = extract_features(images, net, cache_dir=tmp_path, progress=False)
    assert net.calls == 2 and out.x.shape == (10, 4)


def test_a_backbone_must_return_vectors(tmp_path):
    with pytest.raises(ValueError, match=r"backbone must return \(batch, features\)"):
        extract_features(_images(), nn.Identity(), cache_dir=tmp_path, progress=False)


def test_with_features_replaces_one_side_and_keeps_the_rest(tmp_path):
    data = concept_world(seed=0)
    net = nn.Linear(data.target.x.shape[1], 3)
    out = with_features(data, "target", net, cache_dir=tmp_path, progress=False)
    assert out.target.x.shape == (len(data.target), 3) and out.source is data.source
    assert out.splits == data.splits and "target_backbone" in out.info
    with pytest.raises(ValueError, match="role must be 'source' or 'target'"):
        with_features(data, "both", net, cache_dir=tmp_path)


def test_resnet18_backbone_gives_512_features_and_checks_its_arguments(tmp_path):
    net = image_backbone("resnet18", weights=None, image_size=32)
    images = Modality("image", torch.rand(2, 3, 32, 32), torch.ones(2), torch.zeros(2, dtype=torch.long))
    out = extract_features(images, net, cache_dir=tmp_path, progress=False)
    assert out.x.shape == (2, 512)
    with pytest.raises(ValueError, match="weights must be 'imagenet', None or an existing"):
        image_backbone("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="name must be 'resnet18'"):
        image_backbone("vgg")


def test_resnet18_loads_a_state_dict_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    net = image_backbone("resnet18", weights=tmp_path / "weights.pth", image_size=None)
    torch.testing.assert_close(net[1].conv1.weight, reference.conv1.weight)
