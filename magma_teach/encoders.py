"""Encoders e_s, e_t that map each modality into one shared space, and the shared classifier φ.

Every encoder is called as ``encoder(x, lengths) -> z`` with ``z`` of shape (B, dim) — the batch
contract of :mod:`magma_teach.data.base`. Three rules make them fit the rest of the package:

* **An example's embedding depends on that example only.** Nothing is computed across the batch,
  in training or evaluation: a query's prediction at meta-test must not change with the other
  queries of its task or with the other tasks stacked beside it under ``vmap``. Normalisation is
  per example (the audio encoder standardises each utterance) or fixed: the optional ResNet-18's
  batch-norm layers are torchvision's ``FrozenBatchNorm2d``, constant statistics and affine terms
  that nothing updates in place, so they are also safe under ``torch.func.vmap`` and ``grad``.
* **Padding is masked.** Speech and text are padded to a common length. Pooling over time uses a mask
  built from ``lengths``, so padded frames never reach the embedding (the authors' code max-pooled
  over padding; see PAPER_NOTES.md).
* **No data-dependent Python branches,** so ``vmap`` and ``grad`` trace them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from magma_teach.data.base import MODALITY_KINDS, TEXT_VOCAB_SIZE, Modality


def time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) valid lengths → (B, frames) float mask, 1 on real frames and 0 on padding."""
    return (torch.arange(frames, device=lengths.device) < lengths.unsqueeze(-1)).float()


def masked_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pool (B, C, frames) features over real frames only → (B, 2C): [masked mean, masked max]."""
    m = mask.unsqueeze(1)
    mean = (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    # -inf-like fill keeps padding out of the max without a Python branch.
    peak = (h - (1.0 - m) * 1e4).amax(-1)
    return torch.cat([mean, peak], dim=-1)


def _downsampled(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class ImageEncoder(nn.Module):
    """Images (B, C, H, W) → (B, dim).

    ``backbone="cnn"``: three 3×3 convolutions (the last two with stride 2), global average pooling and
    a linear projection — enough for the 8×16 handwritten numbers. ``backbone="resnet18"``: torchvision's
    ResNet-18 (pass ``weights=``, a torchvision weights enum, for pretrained weights where you have
    them), its classification layer replaced by the projection.

    The ResNet's batch-norm layers are ``torchvision.ops.FrozenBatchNorm2d``: each channel is scaled
    and shifted with the stored mean, variance and affine terms, in training and evaluation alike.
    Batch statistics (``torch.func.replace_all_batch_norm_modules_``, which this encoder used before)
    made an image's embedding, and a query's predicted label, depend on the other images of its batch;
    ordinary ``BatchNorm2d`` updates running statistics in place, which ``vmap`` over tasks cannot do,
    and switches behaviour between train and eval. Frozen statistics avoid all three. With
    ``weights=`` they are the ImageNet statistics the weights were trained with; without, they are
    mean 0, variance 1, scale 1, shift 0 (≈ the identity), and the network trains as a plain
    residual network. The frozen affine terms are buffers, not parameters: the convolutions before
    them remain trainable and can absorb any per-channel scale.
    """

    def __init__(self, in_channels: int = 1, dim: int = 64, width: int = 16, backbone: str = "cnn",
                 weights=None):
        super().__init__()
        if backbone == "cnn":
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
            out = 2 * width
        elif backbone == "resnet18":
            from torchvision.models import resnet18
            from torchvision.ops import FrozenBatchNorm2d

            # Frozen statistics: no dependence on the rest of the batch, nothing updated in place (vmap).
            net = resnet18(weights=weights, norm_layer=FrozenBatchNorm2d)
            if in_channels != 3:
                net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            out, net.fc = net.fc.in_features, nn.Identity()
            self.features = net
        else:
            raise ValueError(f"backbone must be 'cnn' or 'resnet18', got {backbone!r}")
        self.project = nn.Linear(out, dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(self.features(x))


class AudioEncoder(nn.Module):
    """Log-mel spectrograms (B, n_mels, frames) with valid ``lengths`` (B,) → (B, dim).

    Each spectrogram is first standardised over its real frames (one mean and one standard deviation
    per utterance, so loudness goes but the spectral shape stays) and averaged over blocks of ``pool``
    frames (10 ms hops → 40 ms steps: speech sounds last longer than that, and it makes the encoder
    light enough to meta-train on a laptop CPU). Two 1-D convolutions then run over time with the mel
    bands as channels (the second dilated, to see about 0.5 s), and masked mean+max pooling
    summarises the utterance.
    """

    def __init__(self, n_mels: int = 40, dim: int = 64, width: int = 64, pool: int = 4):
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv1d(n_mels, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, padding=2, dilation=2)
        self.project = nn.Linear(2 * width, dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[-1]).unsqueeze(1)  # (B, 1, frames)
        count = (mask.sum((-2, -1)) * x.shape[1]).clamp_min(1.0)
        mean = (x * mask).sum((-2, -1)) / count
        var = (((x - mean[:, None, None]) * mask) ** 2).sum((-2, -1)) / count
        x = (x - mean[:, None, None]) / (var[:, None, None] + 1e-5).sqrt() * mask
        x = F.avg_pool1d(x, self.pool, ceil_mode=True)
        frame_mask = time_mask(_downsampled(lengths, self.pool), x.shape[-1]).unsqueeze(1)
        h = F.relu(self.conv1(x)) * frame_mask
        h = F.relu(self.conv2(h))
        return self.project(masked_mean_max(h, frame_mask.squeeze(1)))


class TextEncoder(nn.Module):
    """Character ids (B, max_chars), 0 = padding, with ``lengths`` (B,) → (B, dim).

    Character embeddings, two 1-D convolutions (character n-grams of width 3 and 5 combined), masked
    mean+max pooling. Characters rather than words, so every script works without a tokenizer.
    """

    def __init__(self, vocab_size: int = TEXT_VOCAB_SIZE, dim: int = 64, embed: int = 32, width: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.conv1 = nn.Conv1d(embed, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 5, padding=2)
        self.project = nn.Linear(2 * width, dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[-1])
        h = self.embed(x).transpose(1, 2) * mask.unsqueeze(1)  # (B, embed, chars)
        h = F.relu(self.conv1(h)) * mask.unsqueeze(1)
        h = F.relu(self.conv2(h))
        return self.project(masked_mean_max(h, mask))


class VectorEncoder(nn.Module):
    """Feature vectors (B, in_dim) → (B, dim) through a two-layer MLP (the synthetic concept world)."""

    def __init__(self, in_dim: int, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


class Classifier(nn.Module):
    """The shared classifier φ: shared-space embeddings (B, dim) → logits (B, n_way).

    φ reads the *direction* of an embedding (it L2-normalises first): the alignment loss trained with
    τ compares cosines, so only directions are made to agree across modalities, and φ trained on
    source embeddings must not depend on a length the target encoder never learned to match.
    """

    def __init__(self, dim: int = 64, n_way: int = 5, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_way))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(F.normalize(z, dim=-1) * z.shape[-1] ** 0.5)


def encoder_for(modality: Modality | str, dim: int = 64, shape: tuple | None = None, **kwargs) -> nn.Module:
    """Build the encoder that suits a modality.

    Pass a :class:`Modality` (its kind and input shape are read from it) or a kind string plus the
    per-example ``shape`` (e.g. ``(40, 300)`` for audio). Extra keyword arguments go to the encoder.
    """
    if isinstance(modality, Modality):
        kind, shape = modality.kind, tuple(modality.x.shape[1:])
    else:
        kind = modality
    if kind not in MODALITY_KINDS:
        raise ValueError(f"modality must be one of {MODALITY_KINDS}, got {kind!r}")
    if kind != "text" and shape is None:
        raise ValueError(f"shape is required to build an encoder for kind {kind!r}")
    if kind == "image":
        return ImageEncoder(in_channels=shape[0], dim=dim, **kwargs)
    if kind == "audio":
        return AudioEncoder(n_mels=shape[0], dim=dim, **kwargs)
    if kind == "text":
        return TextEncoder(dim=dim, **kwargs)
    return VectorEncoder(in_dim=shape[0], dim=dim, **kwargs)
