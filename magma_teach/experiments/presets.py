"""Presets: every size of a run, and the per-benchmark settings that turn a preset into a MagmaConfig.

``tiny`` is for tests, ``quick`` for the book and CI (CPU, minutes), ``full`` for the paper's protocol
on a GPU. One :class:`Preset` decides every size, so all three share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from magma_teach.data.base import CrossModalDataset
from magma_teach.magma import MagmaConfig
from magma_teach.experiments.rules import CONCEPT, MAGMA_UPDATE, update_rule
from magma_teach.reptile import InnerLoop


@dataclass(frozen=True)
class Preset:
    """All sizes of a run. ``tiny`` is for tests, ``quick`` for the book and CI, ``full`` for a GPU."""

    name: str
    iterations: int  # meta-training iterations (each: one alignment and one classifier update)
    validate_every: int
    meta_batch: int  # tasks per Reptile update
    inner_steps: int
    finetune_steps: int  # meta-test fine-tuning steps on the k shots
    repeats: int  # evaluation repeats (mean ± std over them)
    shots: tuple = (1, 5, 10)
    source_pretrain_steps: int = 300
    patience: int | None = None  # stop when validation stops improving (full preset)
    data: str = "quick"  # data-generation preset of the offline benchmarks
    data_overrides: dict = field(default_factory=dict)
    noise_rates: tuple = (0.0, 0.2, 0.4)
    retrieval_k: tuple = (5, 10)
    tradeoff_pairs: tuple = (30, 120, 480)
    tradeoff_noise: tuple = (0.0, 0.3, 0.6)
    tradeoff_labels: tuple = (30, 120)
    train_seeds: int = 1  # every approach is trained with seeds seed, seed + 1, …; ± spans seeds × draws
    # Inner alignment gradient steps per ablation variant (equal for all). The tables' budget in quick: a
    # screen at 1,200 steps (to fit 10 minutes) ranked the rules differently (benchmarks/README.md).
    ablation_steps: int = 4000
    ablation_validations: int = 4  # validations per ablation run (model selection on validation concepts)
    ablation_confirming: bool = True  # also run the ablation's second concept-groups combination (ablation.CONFIRMING)


PRESETS = {
    "tiny": Preset("tiny", iterations=4, validate_every=2, meta_batch=2, inner_steps=2, finetune_steps=3,
                   repeats=1, shots=(1, 5), source_pretrain_steps=5, noise_rates=(0.0, 0.5),
                   retrieval_k=(2,), tradeoff_pairs=(20, 60), tradeoff_noise=(0.0, 0.5), tradeoff_labels=(20,),
                   ablation_steps=16, ablation_validations=2,
                   data_overrides={"numbers": {"high": 39, "per_concept": 12},
                                   "languages": {"languages": ["ar", "bg", "de", "el", "en", "es", "fi", "fr",
                                                               "hi", "it", "ja", "ko", "pl", "ru", "tr"],
                                                 "per_language": 12}}),
    "quick": Preset("quick", iterations=50, validate_every=12, meta_batch=8, inner_steps=5, finetune_steps=20,
                    repeats=3, train_seeds=3, ablation_steps=2000, ablation_confirming=False),
    "full": Preset("full", iterations=3000, validate_every=100, meta_batch=16, inner_steps=5, finetune_steps=30,
                   repeats=10, source_pretrain_steps=2000, patience=5, data="full",
                   noise_rates=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), tradeoff_pairs=(30, 60, 120, 240, 480, 960),
                   tradeoff_noise=(0.0, 0.2, 0.4, 0.6, 0.8), tradeoff_labels=(30, 120, 480), train_seeds=5,
                   ablation_steps=48_000, ablation_validations=10),
}

# How each benchmark forms alignment tasks, for every cross-modal approach alike (the paper compares
# them with one loss). In numbers an image and an utterance of 42 share only the concept, so the
# ablation (chapter 6) chose eq. 4 over concept groups on validation numbers: every image and utterance
# of a number in a task are positives of each other, and no two of one number are ever negatives.
# In languages a sentence pairs with its own speech, but the task is language ID: grouping by language
# (every sentence and utterance of a language positive to each other) also scored higher on validation
# languages, for MAGMA and plain alignment alike: python -m magma_teach run pairing-languages.
# The full-data benchmarks: CIFAR→ESC-50 has only weak (cluster) pairs, 5 clusters × 4 clips a task;
# FLEURS and the recipes pair each text with its own recording or photo (not re-examined here).
ALIGNMENT = {"numbers": CONCEPT,
             "languages": CONCEPT,  # the same choice on validation languages: eq. 4 over language groups
             "conceptworld": dict(align_way=5, pairs_per_concept=4),
             "esc50": dict(align_way=5, pairs_per_concept=4, weak=True),
             "fleurs": dict(align_way=16, pairs_per_concept=1),
             "recipes": dict(align_way=16, pairs_per_concept=1)}

# With ``--data full`` a runner written for an offline benchmark runs on its real counterpart.
FULL_DATA = {"numbers": "esc50", "languages": "fleurs"}


def magma_config(preset: Preset, data: CrossModalDataset, approach: str | None = None, **changes) -> MagmaConfig:
    """The :class:`MagmaConfig` of a preset on a benchmark, for one ``approach`` (or the shared base).

    Tasks are as wide as the benchmark's evaluation tasks; alignment tasks use at most as many concepts
    as the meta-train split has. For an ``approach`` the config also gets, in order: MAGMA's update
    rule (:data:`~magma_teach.experiments.rules.MAGMA_UPDATE`, for ``"MAGMA"``), the learning rates its tuning study chose on validation
    concepts (:func:`magma_teach.tuning.tuned`), and an equal budget: as many inner gradient steps as
    the preset's iterations × meta-batch (a rule with a smaller meta-batch gets more iterations, and
    as many validations). ``changes`` come last.
    """
    from magma_teach import tuning

    alignment = dict(ALIGNMENT[data.name])
    alignment["align_way"] = min(alignment["align_way"], len(data.splits["meta_train"]))
    cfg = MagmaConfig(n_way=len(data.eval_tasks[0]),  # the benchmark's task size (5 but for fleurs)
        iterations=preset.iterations, validate_every=preset.validate_every, meta_batch=preset.meta_batch,
        align_inner=InnerLoop(preset.inner_steps, 3e-3), classify_inner=InnerLoop(preset.inner_steps, 3e-3),
        finetune=InnerLoop(preset.finetune_steps, 1e-3, betas=(0.9, 0.999)),
        source_pretrain_steps=preset.source_pretrain_steps, patience=preset.patience, **alignment)
    if approach == "MAGMA":  # the update rule the ablation chose (chapter 6), on the benchmark's pairing
        cfg = replace(cfg, **update_rule(MAGMA_UPDATE, cfg))
    if approach is not None:
        cfg = tuning.apply(cfg, tuning.tuned(data.name, approach))
    scale = preset.meta_batch // cfg.meta_batch if preset.meta_batch % cfg.meta_batch == 0 else 1
    validations = max(1, preset.iterations // preset.validate_every)
    iterations = preset.iterations * scale
    cfg = replace(cfg, iterations=iterations, validate_every=max(1, iterations // validations))
    return replace(cfg, **changes)
