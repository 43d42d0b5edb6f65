"""The two containers every benchmark fills: a :class:`Modality` and a :class:`CrossModalDataset`.

Every modality is stored padded to one shape, with a ``lengths`` vector saying how much of each row
is real. An encoder therefore always receives the pair ``(x, lengths)`` — a *batch* — whatever the
modality, which is what lets one batched Reptile (``torch.func.vmap``) handle images, speech and text.

Shapes (N examples):

=========  ======================  =======  ================================================
kind       ``x``                   dtype    ``lengths``
=========  ======================  =======  ================================================
image      (N, C, H, W)            float32  all ones (an image has no padding)
audio      (N, n_mels, frames)     float32  number of real frames of each log-mel spectrogram
text       (N, max_chars)          int64    number of real characters (0 is the padding id)
vector     (N, D)                  float32  all ones (the synthetic concept world)
=========  ======================  =======  ================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

MODALITY_KINDS = ("image", "audio", "text", "vector")
TEXT_VOCAB_SIZE = 4096  # id 0 is padding; every Unicode code point maps into 1..4095
SPLITS = ("meta_train", "val", "meta_test")

Batch = tuple[torch.Tensor, torch.Tensor]  # (x, lengths)


def char_ids(text: str, max_len: int, vocab_size: int = TEXT_VOCAB_SIZE) -> tuple[list[int], int]:
    """Map a string of any script to a fixed-size character vocabulary.

    Code point ``c`` becomes ``1 + c % (vocab_size - 1)``: Latin, Cyrillic, Devanagari and CJK all
    land in one table without a tokenizer (rare collisions between distant scripts are harmless for
    a character CNN). Returns the ids padded with 0 to ``max_len`` and the number of real characters.
    """
    ids = [1 + ord(ch) % (vocab_size - 1) for ch in text[:max_len]]
    return ids + [0] * (max_len - len(ids)), len(ids)


@dataclass
class Modality:
    """N examples of one modality, padded to a common shape (see the module docstring)."""

    kind: str
    x: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor  # (N,) int64 concept id of each example

    def __post_init__(self):
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"kind must be one of {MODALITY_KINDS}, got {self.kind!r}")
        n = len(self.x)
        if len(self.lengths) != n or len(self.labels) != n:
            raise ValueError(f"x, lengths and labels must have the same length, got {n}, "
                             f"{len(self.lengths)}, {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, index: torch.Tensor) -> Batch:
        """The examples at ``index`` (any shape of int64 indices) as an encoder batch."""
        return self.x[index], self.lengths[index]

    def indices_of(self, concept: int) -> torch.Tensor:
        """Indices of all examples of one concept."""
        return torch.nonzero(self.labels == concept).flatten()

    def to(self, device) -> "Modality":
        return Modality(self.kind, self.x.to(device), self.lengths.to(device), self.labels.to(device))


@dataclass
class CrossModalDataset:
    """A source/target benchmark: two modalities over shared concepts, pairs, splits and eval tasks.

    ``pairs[p] = (i, j)`` says source example ``i`` and target example ``j`` show the same instance
    (strong pairs, eq. 3). ``clusters[c]`` is the coarse group of concept ``c``; two examples of
    concepts in the same cluster form a weak pair (eq. 4). ``splits`` maps ``"meta_train"``, ``"val"``
    and ``"meta_test"`` to disjoint lists of concept ids; ``eval_tasks`` are the fixed N-way tasks
    over meta-test concepts that every method is evaluated on. ``info`` holds the rest (sample rate,
    the texts, generation config, ...).
    """

    name: str
    class_names: list[str]
    source: Modality
    target: Modality
    pairs: torch.Tensor
    clusters: torch.Tensor
    splits: dict[str, list[int]]
    eval_tasks: list[list[int]]
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"splits must contain {SPLITS}, missing {missing}")
        seen: set[int] = set()
        for s in SPLITS:
            overlap = seen & set(self.splits[s])
            if overlap:
                raise ValueError(f"splits must be disjoint; concepts {sorted(overlap)[:5]} appear twice")
            seen |= set(self.splits[s])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def pairs_of(self, concepts) -> torch.Tensor:
        """The strong pairs whose source example belongs to one of ``concepts``: (P, 2) int64."""
        wanted = torch.as_tensor(list(concepts), device=self.pairs.device)
        keep = torch.isin(self.source.labels[self.pairs[:, 0]], wanted)
        return self.pairs[keep]

    def to(self, device) -> "CrossModalDataset":
        return CrossModalDataset(self.name, self.class_names, self.source.to(device), self.target.to(device),
                                 self.pairs.to(device), self.clusters.to(device), self.splits,
                                 self.eval_tasks, self.info)
