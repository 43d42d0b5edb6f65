"""Benchmarks and episode samplers (see :mod:`magma_teach.data.base` for the containers).

``load("numbers")`` / ``load("languages")`` give the offline benchmarks (generated once, then cached);
``concept_world(...)`` the synthetic one; ``load("esc50")``, ``load("fleurs")`` and ``load("recipes")``
the paper's own data, downloaded with checksums on first use (:mod:`.download`).
"""

from magma_teach.data.base import (SPLITS, TEXT_VOCAB_SIZE, Batch, CrossModalDataset, Modality, char_ids)
from magma_teach.data.conceptworld import concept_world
from magma_teach.data.episodes import (AlignmentTask, ClassificationTask, sample_alignment_task,
                                       sample_classification_task, stack_tasks)

__all__ = ["SPLITS", "TEXT_VOCAB_SIZE", "Batch", "CrossModalDataset", "Modality", "char_ids",
           "AlignmentTask", "ClassificationTask", "sample_alignment_task", "sample_classification_task",
           "stack_tasks", "concept_world", "load", "info_lines", "BENCHMARKS"]


def __getattr__(name):
    # The benchmark registry imports torchaudio and eSpeak helpers: load it only when asked for.
    if name in ("load", "info_lines", "BENCHMARKS"):
        from magma_teach.data import registry
        return getattr(registry, name)
    raise AttributeError(name)
