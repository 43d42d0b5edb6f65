"""Benchmarks and episode samplers (see :mod:`magma_teach.data.base` for the containers)."""

from magma_teach.data.base import (SPLITS, TEXT_VOCAB_SIZE, Batch, CrossModalDataset, Modality, char_ids)
from magma_teach.data.episodes import (AlignmentTask, ClassificationTask, sample_alignment_task,
                                       sample_classification_task, stack_tasks)

__all__ = ["SPLITS", "TEXT_VOCAB_SIZE", "Batch", "CrossModalDataset", "Modality", "char_ids",
           "AlignmentTask", "ClassificationTask", "sample_alignment_task", "sample_classification_task",
           "stack_tasks"]
