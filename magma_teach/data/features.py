"""Frozen pretrained backbones: turn one modality into fixed feature vectors, computed once and cached.

The paper's image encoder starts from an ImageNet ResNet-18. Where you have such weights (or any
``torch.nn.Module`` you trust), run it once over a modality and train MAGMA on top of the features:

>>> data = load("esc50")                                                    # doctest: +SKIP
>>> data = with_features(data, "source", image_backbone("resnet18"))         # doctest: +SKIP

The modality becomes ``kind="vector"`` with ``x`` of shape (N, D), so :func:`~magma_teach.encoders.encoder_for`
builds a small MLP on it and everything else (tasks, Reptile, the protocol) is unchanged. Features are
stored in ``<cache>/features/`` under a key made of the backbone's class, a hash of its weights and a hash
of the input tensor, through the package's disk cache (:func:`~magma_teach.data.cache.cached`: one
writer per file, a damaged file reported in one line and rebuilt): the same backbone on the same data
is computed once, any change computes anew. The frozen ResNet-18 keeps batch-norm in its evaluation
mode, so an image's features never depend on the other images of its batch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.data.cache import cache_root, cached
from magma_teach.data.download import DownloadError
from magma_teach.utils import progress as progress_bar

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """Images in [0, 1], (N, 3, H, W) → resized to ``size`` × ``size`` and normalised as ImageNet expects."""

    def __init__(self, size: int | None = 224):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


def image_backbone(name: str = "resnet18", weights: str | os.PathLike | None = "imagenet",
                   image_size: int | None = 224) -> nn.Module:
    """A frozen torchvision ResNet-18 without its last layer: (N, 3, H, W) in [0, 1] → (N, 512).

    ``weights="imagenet"`` loads torchvision's ImageNet weights (from the torch hub cache, else
    torchvision downloads them and checks their hash); a path loads a state dict you have;
    ``None`` keeps the random initialisation (for tests and ablations).
    """
    import torchvision

    if name != "resnet18":
        raise ValueError(f"name must be 'resnet18' (or pass your own nn.Module to extract_features), got {name!r}")
    net = torchvision.models.resnet18(weights=None)
    if weights == "imagenet":
        try:
            state = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad hash is a RuntimeError
            raise DownloadError(f"resnet18: the ImageNet weights are not in the torch hub cache and could not be "
                                f"downloaded ({type(err).__name__}); pass weights=<path to a state dict> "
                                f"or weights=None") from None
        net.load_state_dict(state)
    elif weights is not None:
        if not Path(weights).is_file():
            raise ValueError(f"weights must be 'imagenet', None or an existing state-dict file, got {str(weights)!r}")
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    return nn.Sequential(ImageNetInput(image_size), net).eval()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the bytes, shapes and dtypes of some tensors (the cache key's ingredients)."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def backbone_digest(backbone: nn.Module) -> str:
    """The backbone's class name plus a hash of its parameters and buffers."""
    state = backbone.state_dict()
    return f"{type(backbone).__name__}-{tensor_digest(*(state[k] for k in sorted(state)))[:16]}"


@torch.no_grad()
def extract_features(modality: Modality, backbone: nn.Module, batch_size: int = 256,
                     device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> Modality:
    """Run a frozen ``backbone`` over every example → a ``kind="vector"`` :class:`Modality` (N, D).

    ``backbone`` is called on ``x[i:i + batch_size]`` (images: (B, C, H, W); other kinds: whatever
    their ``x`` is) and must return (B, D). The result is cached (see the module docstring); labels
    are kept, lengths become ones.
    """
    key = {"backbone": backbone_digest(backbone), "data": tensor_digest(modality.x, modality.lengths)}

    def build() -> dict:
        net = backbone.to(device).eval()
        chunks = []
        for start in progress_bar(range(0, len(modality), batch_size), "features", show=progress):
            out = net(modality.x[start:start + batch_size].to(device))
            if out.dim() != 2:
                raise ValueError(f"backbone must return (batch, features), got shape {tuple(out.shape)}")
            chunks.append(out.float().cpu())
        return {"features": torch.cat(chunks)}

    # The package's disk cache: one writer per file, a damaged file is reported in one line and rebuilt.
    payload = cached("features", key, build, cache_root(cache_dir) / "features",
                     validate=lambda p: _vector(p["features"], modality))
    return _vector(payload["features"], modality)


def _vector(features: torch.Tensor, like: Modality) -> Modality:
    if not isinstance(features, torch.Tensor) or len(features) != len(like):
        raise ValueError("cached features do not match the modality")
    return Modality("vector", features, torch.ones(len(features)), like.labels.clone())


def with_features(dataset: CrossModalDataset, role: str, backbone: nn.Module, **kwargs) -> CrossModalDataset:
    """A copy of ``dataset`` whose ``role`` (``"source"`` or ``"target"``) modality is replaced by
    :func:`extract_features` of it (keyword arguments go there)."""
    if role not in ("source", "target"):
        raise ValueError(f"role must be 'source' or 'target', got {role!r}")
    features = extract_features(getattr(dataset, role), backbone, **kwargs)
    info = {**dataset.info, f"{role}_backbone": backbone_digest(backbone)}
    return replace(dataset, **{role: features}, info=info)
