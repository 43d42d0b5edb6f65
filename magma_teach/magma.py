"""MAGMA, Algorithm 1: meta-alignment of two encoders plus a meta-classifier, then meta-test adaptation.

Each meta-training iteration does two Reptile updates (:mod:`magma_teach.reptile`):

1. **Meta-alignment.** Sample T alignment tasks of source/target pairs from meta-train concepts.
   From e_s^meta and e_t^meta take inner steps on the contrastive alignment loss (eq. 3 for strong
   pairs, eq. 4 for weak pairs) and move both meta-encoders towards the adapted ones.
2. **Meta-classifier.** Sample T N-way classification tasks of the *source* modality. From φ^meta
   take inner steps on the cross-entropy of φ on top of e_s (e_s fixed here, as in Algorithm 1) and
   move φ^meta towards the adapted classifiers.

No target label is used in meta-training: the target encoder learns only from pairs. At meta-test,
a task of unseen target concepts arrives with k labeled samples per concept; a copy of e_t^meta and
φ^meta is fine-tuned on them and classifies the task's query samples (:func:`finetune_predictor`).

Model selection follows the protocol: every ``validate_every`` iterations the meta-parameters are
scored on few-shot target tasks over the *validation* concepts (their k shots are the only target
labels the selection sees, as a development set), and the best meta-parameters are kept. Meta-test
concepts are never looked at during training.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import trange

from magma_teach.data.base import CrossModalDataset
from magma_teach.data.episodes import (ClassificationTask, sample_alignment_task,
                                       sample_classification_task, stack_tasks)
from magma_teach.encoders import Classifier, encoder_for
from magma_teach.losses import DEFAULT_TEMPERATURE, strong_nce, weak_nce
from magma_teach.reptile import EpsilonSchedule, InnerLoop, Params, meta_step, batched_adapt
from magma_teach.utils import check_positive, check_range


class CrossModalModel(nn.Module):
    """The three learned parts: source encoder e_s, target encoder e_t and shared classifier φ."""

    def __init__(self, source: nn.Module, target: nn.Module, classifier: nn.Module):
        super().__init__()
        self.source, self.target, self.classifier = source, target, classifier

    @classmethod
    def for_dataset(cls, data: CrossModalDataset, dim: int = 64, n_way: int = 5, **encoder_kwargs):
        """Encoders sized for ``data``'s two modalities, projecting into a ``dim``-dimensional space."""
        check_positive("dim", dim, integer=True)
        return cls(encoder_for(data.source, dim, **encoder_kwargs.get("source", {})),
                   encoder_for(data.target, dim, **encoder_kwargs.get("target", {})),
                   Classifier(dim, n_way))

    def parts(self, *names: str) -> Params:
        """The live parameters of the named parts, keyed ``"<part>.<param>"`` (Reptile updates them in place)."""
        return {f"{n}.{k}": p for n in names for k, p in getattr(self, n).named_parameters()}

    def call(self, part: str, params: Params, *args):
        """Run one part with parameters from a ``parts()``-style dict (for vmap/grad)."""
        prefix = part + "."
        own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        return functional_call(getattr(self, part), own, args)

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path) -> "CrossModalModel":
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return self


@dataclass
class MagmaConfig:
    """Every knob of meta-training and meta-test adaptation (defaults = the quick preset's)."""

    iterations: int = 300
    meta_batch: int = 8  # T tasks per Reptile update
    n_way: int = 5
    align_way: int | None = None  # concepts per alignment task (None: n_way)
    pairs_per_concept: int = 4  # pairs of each concept in an alignment task
    weak: bool = False  # eq. 4 (cluster-level pairs) instead of eq. 3 (instance pairs)
    pairing_noise: float = 0.0
    source_shots: int = 5
    temperature: float = DEFAULT_TEMPERATURE
    align_inner: InnerLoop = field(default_factory=lambda: InnerLoop(steps=5, lr=1e-3))
    classify_inner: InnerLoop = field(default_factory=lambda: InnerLoop(steps=5, lr=3e-3))
    epsilon: EpsilonSchedule = field(default_factory=lambda: EpsilonSchedule(1.0, 0.1))
    finetune: InnerLoop = field(default_factory=lambda: InnerLoop(steps=20, lr=1e-3, betas=(0.9, 0.999)))
    validate_every: int = 50
    val_shots: int = 5
    source_pretrain_steps: int = 0  # supervised steps on source labels before meta-training (0: none)
    patience: int | None = None  # stop after this many validations without improvement (None: never)

    def __post_init__(self):
        for name in ("iterations", "meta_batch", "n_way", "pairs_per_concept", "source_shots",
                     "validate_every", "val_shots"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("align_way", "patience"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name), integer=True)
        if self.source_pretrain_steps < 0:
            raise ValueError(f"source_pretrain_steps must be >= 0, got {self.source_pretrain_steps}")
        check_positive("temperature", self.temperature)
        check_range("pairing_noise", self.pairing_noise, 0.0, 1.0)

    def with_(self, **changes) -> "MagmaConfig":
        return replace(self, **changes)


# ---------------------------------------------------------------- the three functional losses
def alignment_loss(model: CrossModalModel, temperature: float, weak: bool):
    """``loss(params, task)`` on one :class:`AlignmentTask`: eq. 4 when ``weak`` else eq. 3."""
    def loss(params, task):
        z_s = model.call("source", params, *task.source)
        z_t = model.call("target", params, *task.target)
        if weak:
            return weak_nce(z_s, z_t, task.groups_s, task.groups_t, temperature)
        return strong_nce(z_s, z_t, temperature)
    return loss


def classifier_loss(model: CrossModalModel):
    """``loss(params, (z, y))``: cross-entropy of φ on precomputed embeddings ``z`` (B, dim)."""
    def loss(params, batch):
        z, y = batch
        return F.cross_entropy(model.call("classifier", params, z), y)
    return loss


def target_loss(model: CrossModalModel, encoder: str = "target"):
    """``loss(params, task)``: cross-entropy of φ(e(x)) on a task's support set (meta-test fine-tuning)."""
    def loss(params, task):
        return F.cross_entropy(model.call("classifier", params, model.call(encoder, params, *task.support)),
                               task.support_y)
    return loss


# ---------------------------------------------------------------- meta-training
@torch.no_grad()
def embed(model: CrossModalModel, part: str, batch) -> torch.Tensor:
    """Embed a stacked batch (T, B, ...) with one part of the model → (T, B, dim)."""
    x, lengths = batch
    z = getattr(model, part)(x.flatten(0, 1), lengths.flatten(0, 1))
    return z.unflatten(0, x.shape[:2])


def meta_align_step(model, data, concepts, cfg: MagmaConfig, epsilon: float, generator) -> None:
    """Lines 3-6 of Algorithm 1 for a meta-batch: alignment tasks → Reptile update of e_s, e_t."""
    tasks = stack_tasks([sample_alignment_task(data, concepts, cfg.align_way or cfg.n_way, cfg.pairs_per_concept, generator,
                                               weak=cfg.weak, pairing_noise=cfg.pairing_noise)
                         for _ in range(cfg.meta_batch)])
    meta_step(alignment_loss(model, cfg.temperature, cfg.weak), model.parts("source", "target"),
              tasks, cfg.align_inner, epsilon)


def meta_classify_step(model, data, concepts, cfg: MagmaConfig, epsilon: float, generator) -> None:
    """Lines 7-10 of Algorithm 1: source classification tasks → Reptile update of φ on top of e_s."""
    tasks = stack_tasks([sample_classification_task(data.source, concepts, cfg.n_way, cfg.source_shots, 1,
                                                    generator) for _ in range(cfg.meta_batch)])
    z = embed(model, "source", tasks.support)
    meta_step(classifier_loss(model), model.parts("classifier"), (z, tasks.support_y),
              cfg.classify_inner, epsilon)


def train_magma(model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig, seed: int = 0,
                progress: bool | None = None) -> dict:
    """Meta-train ``model`` on ``data`` with Algorithm 1 (meta-alignment, then meta-classifier, per iteration).

    With ``cfg.source_pretrain_steps`` > 0 the source encoder is first pre-trained on source labels
    (:func:`pretrain_source`), the analogue of the paper's ImageNet-initialised image encoder.
    """
    pretrain_source(model, data, cfg.source_pretrain_steps, seed=seed)
    return train_loop(model, data, cfg, [meta_align_step, meta_classify_step], seed, progress, "MAGMA")


def pretrain_source(model: CrossModalModel, data: CrossModalDataset, steps: int, lr: float = 1e-3,
                    batch: int = 64, seed: int = 0) -> None:
    """Supervised pre-training of e_s on the labeled source examples of the meta-train concepts.

    The source modality is the abundant, labeled one: in the paper its encoder starts from an
    ImageNet-trained ResNet. Offline we have no such network, so we give e_s the same head start from
    the source labels it is allowed to use (a temporary linear head over all meta-train concepts,
    discarded afterwards). Algorithm 1 itself then starts from this e_s. No target data is touched.
    """
    if steps <= 0:
        return
    label_of = meta_train_labels(data)
    pool = torch.nonzero(label_of[data.source.labels] >= 0).flatten()
    head = nn.Linear(model.classifier.net[0].in_features, len(data.splits["meta_train"])).to(pool.device)
    opt = torch.optim.Adam([*model.source.parameters(), *head.parameters()], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = pool[torch.randint(len(pool), (batch,), generator=generator).to(pool.device)]
        logits = head(model.source(*data.source.batch(idx)))
        opt.zero_grad()
        F.cross_entropy(logits, label_of[data.source.labels[idx]]).backward()
        opt.step()


def train_loop(model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig, steps, seed: int = 0,
               progress: bool | None = None, desc: str = "meta-training") -> dict:
    """Run ``cfg.iterations`` iterations of ``steps`` with model selection on the validation concepts.

    Each step is called as ``step(model, data, meta_train_concepts, cfg, epsilon, generator)``; MAGMA
    passes its two Reptile updates, the baselines pass theirs, so every method shares this loop, its
    budget and its selection rule. The model ends with the parameters that scored best on validation.
    Returns ``{"iteration": [...], "val_accuracy": [...], "best_iteration": int}``.
    """
    generator = torch.Generator().manual_seed(seed)
    concepts = data.splits["meta_train"]
    history = {"iteration": [], "val_accuracy": [], "best_iteration": 0}
    best, best_state = -1.0, None
    for it in trange(cfg.iterations, desc=desc, disable=not show_progress(progress)):
        eps = cfg.epsilon(it, cfg.iterations)
        for step in steps:
            step(model, data, concepts, cfg, eps, generator)
        if (it + 1) % cfg.validate_every == 0 or it + 1 == cfg.iterations:
            acc = validation_accuracy(model, data, cfg, seed)
            history["iteration"].append(it + 1)
            history["val_accuracy"].append(acc)
            if acc > best:
                best, best_state, history["best_iteration"] = acc, copy.deepcopy(model.state_dict()), it + 1
            elif cfg.patience and len(history["iteration"]) - history["iteration"].index(history["best_iteration"]) > cfg.patience:
                break  # the validation concepts stopped improving
    model.load_state_dict(best_state)
    return history


def validation_accuracy(model, data: CrossModalDataset, cfg: MagmaConfig, seed: int = 0, n_tasks: int = 8) -> float:
    """Mean few-shot accuracy (%) on fixed-seed target tasks over the validation concepts."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    n_query = max(1, min(10, _min_per_concept(data.target, data.splits["val"]) - cfg.val_shots))
    tasks = stack_tasks([sample_classification_task(data.target, data.splits["val"], cfg.n_way, cfg.val_shots,
                                                     n_query, generator) for _ in range(n_tasks)])
    predictions = finetune_predictor(model, cfg.finetune)(tasks)
    return 100.0 * (predictions == tasks.query_y).float().mean().item()


# ---------------------------------------------------------------- meta-test
def finetune_predictor(model: CrossModalModel, finetune: InnerLoop, encoder: str = "target"):
    """``predict(tasks) -> (T, Q)`` predicted labels for T stacked :class:`ClassificationTask` s.

    Each task fine-tunes its own copy of ``encoder`` and φ on its k labeled support samples (batched
    over tasks with :func:`batched_adapt`), then labels its query samples. The model is not changed.
    """
    def predict(tasks: ClassificationTask) -> torch.Tensor:
        start = {k: v.detach() for k, v in model.parts(encoder, "classifier").items()}
        fast = batched_adapt(target_loss(model, encoder), start, tasks, finetune)

        def logits(params, query):
            return model.call("classifier", params, model.call(encoder, params, *query))

        with torch.no_grad():
            return vmap(logits)(fast, tasks.query).argmax(-1)
    return predict


def _min_per_concept(modality, concepts) -> int:
    return min(int((modality.labels == c).sum()) for c in concepts)


def meta_train_labels(data: CrossModalDataset) -> torch.Tensor:
    """(num_classes,) map from concept id to its index among the meta-train concepts, -1 elsewhere.

    Used to train a classifier over *all* meta-train concepts at once (labels 0..C_train-1).
    """
    concepts = torch.tensor(data.splits["meta_train"], device=data.source.labels.device)
    label_of = torch.full((data.num_classes,), -1, dtype=torch.long, device=concepts.device)
    label_of[concepts] = torch.arange(len(concepts), device=concepts.device)
    return label_of


def show_progress(progress: bool | None) -> bool:
    """tqdm on in a terminal, off in CI (``CI`` set) and when output is not a terminal."""
    if progress is not None:
        return progress
    return not os.environ.get("CI") and sys.stderr.isatty()
