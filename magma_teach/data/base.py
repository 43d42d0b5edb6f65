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

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
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


def check_concepts(concepts, name: str = "concepts", num_classes: int | None = None) -> list[int]:
    """``concepts`` as a list of distinct concept ids, or a one-line ``ValueError`` naming ``name``.

    Allowed: a sequence, array or 1-D integer tensor of non-negative integers (below ``num_classes``
    when given), each at most once. A repeated id is refused rather than dropped: in a task, N labels
    must name N distinct concepts, or two labels share one concept and its examples land in both.
    """
    if isinstance(concepts, torch.Tensor):
        if concepts.dim() != 1 or concepts.dtype.is_floating_point or concepts.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D integer tensor of concept ids, got {concepts.dtype} "
                             f"of shape {tuple(concepts.shape)}")
        values = concepts.tolist()
    elif isinstance(concepts, (str, bytes, dict)) or not isinstance(concepts, Iterable):
        raise ValueError(f"{name} must be a list of concept ids, got {type(concepts).__name__}")
    else:
        values = list(concepts)
    upper = "" if num_classes is None else f", below {num_classes}"
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0 \
                or (num_classes is not None and v >= num_classes):
            raise ValueError(f"{name} must hold integer concept ids (>= 0{upper}), got {v!r}")
    repeated = sorted(int(c) for c, n in Counter(values).items() if n > 1)
    if repeated:
        raise ValueError(f"{name} must name distinct concepts (one label per concept), got {repeated} "
                         f"more than once")
    return [int(v) for v in values]


def check_tasks(tasks, name: str = "tasks", num_classes: int | None = None,
                within: Sequence[int] | None = None) -> list[list[int]]:
    """Fixed N-way tasks as lists of ints, or a one-line ``ValueError`` naming ``name``.

    Every task must list N >= 1 distinct concepts (:func:`check_concepts`), the same N for all tasks
    (they are stacked into one batch), and, with ``within`` (e.g. the meta-test split), only concepts
    from it. An empty list of tasks is allowed here; a caller that evaluates on them refuses it.
    """
    if isinstance(tasks, (str, bytes, torch.Tensor)) or not isinstance(tasks, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a list of concept-id lists, got {type(tasks).__name__}")
    out = [check_concepts(task, f"{name}[{i}]", num_classes) for i, task in enumerate(tasks)]
    sizes = sorted({len(task) for task in out})
    if sizes and (sizes[0] == 0 or len(sizes) > 1):
        raise ValueError(f"{name} must all have the same number of concepts N >= 1, got sizes {sizes}")
    if within is not None:
        allowed = set(within)
        for i, task in enumerate(out):
            outside = [c for c in task if c not in allowed]
            if outside:
                raise ValueError(f"{name}[{i}] must use meta_test concepts only, got {outside}")
    return out


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

    Checked on construction (``ValueError`` naming the field): each split holds distinct concept ids
    in [0, num_classes) and no concept is in two splits; every evaluation task lists N distinct
    meta-test concepts, the same N for all (:func:`check_tasks`). Splits and tasks are stored as
    lists of ints.
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
        n = len(self.class_names)
        self.splits = {**self.splits, **{s: check_concepts(self.splits[s], f"splits[{s!r}]", n) for s in SPLITS}}
        seen: set[int] = set()
        for s in SPLITS:
            overlap = seen & set(self.splits[s])
            if overlap:
                raise ValueError(f"splits must be disjoint; concepts {sorted(overlap)[:5]} appear twice")
            seen |= set(self.splits[s])
        self.eval_tasks = check_tasks(self.eval_tasks, "eval_tasks", n, within=self.splits["meta_test"])

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
