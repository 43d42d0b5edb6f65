"""The paper's baselines, on the same encoders, tasks, training loop and evaluation as MAGMA.

Every approach ends as a :class:`CrossModalModel` whose target encoder and classifier φ are the
starting point for meta-test fine-tuning (:func:`magma_teach.magma.finetune_predictor`), so the only
difference between rows of a table is how that starting point was learned:

=====================================  ======  ==============================================================
approach                               group   starting point of e_t and φ
=====================================  ======  ==============================================================
``Random init`` /                      Uni     random initialisation: fine-tune on the k shots only
``Supervised learning``
``Unsup. meta-learning (reconstruct)`` Uni     Reptile on an autoencoding loss over unlabeled meta-train target data
``Align + Classify``                   Cross   plain contrastive alignment on all pairs; plain classifier on source labels
``Align + Meta Classify``              Cross   plain contrastive alignment; Reptile meta-classifier on the source
``MAGMA``                              Cross   meta-alignment + meta-classifier (Algorithm 1)
``Oracle``                             Oracle  Reptile on labeled *target* tasks of the meta-train concepts
=====================================  ======  ==============================================================

``Random init`` stands where the paper's Table 2 has "Unsup. pre-training": the paper fine-tuned an
audio encoder pre-trained without labels on AudioSet. No such encoder exists offline, so our row is
what it is: fine-tuning from random weights (in Table 4 the paper calls the same thing "Supervised
learning").

"Plain" training takes, per iteration, as many Adam steps as the meta-learner's inner loop and a
batch as large as its whole meta-batch, so all methods see the same number of examples per update.
All alignment uses the same loss (InfoNCE form of eq. 3 or 4) for a fair comparison, and every
cross-modal approach starts from the same source encoder, pre-trained on source labels when
``cfg.source_pretrain_steps`` > 0 (:func:`magma_teach.magma.pretrain_source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from magma_teach.data.base import CrossModalDataset
from magma_teach.data.episodes import sample_alignment_task
from magma_teach.encoders import Classifier
from magma_teach.magma import (CrossModalModel, MagmaConfig, MetaClassifier, alignment_loss, alignment_view,
                               classification_batches,
                               meta_train_labels, pretrain_source, sample_meta_batch, target_loss, train_loop,
                               train_magma)
from magma_teach.reptile import Reptile
from magma_teach.utils import phase

GROUPS = {"Random init": "Uni", "Supervised learning": "Uni",
          "Unsup. meta-learning (reconstruct)": "Uni", "Align + Classify": "Cross",
          "Align + Meta Classify": "Cross", "MAGMA": "Cross", "Oracle": "Oracle"}
APPROACHES = tuple(GROUPS)


@dataclass
class TrainedApproach:
    """A trained starting point and what it consumed of the target modality during meta-training."""

    name: str
    model: CrossModalModel
    target_samples: int  # target examples used in meta-training
    target_labels: int  # of which labeled
    history: dict

    @property
    def group(self) -> str:
        return GROUPS[self.name]


# ---------------------------------------------------------------- plain (non-meta) training steps
class PlainAlignment:
    """Ordinary contrastive training of e_s and e_t with one persistent Adam on batches of meta-train pairs.

    Each iteration takes as many steps as the meta-learner's inner loop, each on one batch of as many
    concepts (or groups) as a whole meta-batch of alignment tasks holds, capped by what the meta-train
    split offers.
    """

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig):
        self.opt = torch.optim.Adam(model.parts("source", "target").values(), lr=cfg.align_inner.lr)
        self.loss = alignment_loss(model, cfg.temperature, cfg.weak)

    def __call__(self, model, data, concepts, cfg, epsilon, generator):
        view = alignment_view(data, cfg)
        groups = len(concepts) if not cfg.weak else int(torch.unique(view.clusters[torch.as_tensor(concepts)]).numel())
        n_way = min(groups, (cfg.align_way or cfg.n_way) * cfg.meta_batch)
        for _ in range(cfg.align_inner.steps):
            task = sample_alignment_task(view, concepts, n_way, cfg.pairs_per_concept, generator, weak=cfg.weak,
                                         pairing_noise=cfg.pairing_noise)
            self.opt.zero_grad()
            self.loss(model.parts("source", "target"), task).backward()
            self.opt.step()


class PlainClassifier:
    """Ordinary cross-entropy training of a classifier over *all* meta-train source concepts on top of e_s.

    At the end, :meth:`as_n_way` keeps its hidden layer and gives it a fresh N-way output layer — the
    usual "pre-train, then fine-tune a new head" recipe.
    """

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig):
        concepts = data.splits["meta_train"]
        self.label_of = meta_train_labels(data)
        self.head = Classifier(model.classifier.net[0].in_features, len(concepts)).to(self.label_of.device)
        self.opt = torch.optim.Adam(self.head.parameters(), lr=cfg.classify_inner.lr)

    def __call__(self, model, data, concepts, cfg, epsilon, generator):
        pool = torch.nonzero(self.label_of[data.source.labels] >= 0).flatten()
        batch = cfg.meta_batch * cfg.n_way * cfg.source_shots
        for _ in range(cfg.classify_inner.steps):
            idx = pool[torch.randint(len(pool), (batch,), generator=generator).to(pool.device)]
            with torch.no_grad():
                z = model.source(*data.source.batch(idx))
            y = self.label_of[data.source.labels[idx]]
            self.opt.zero_grad()
            F.cross_entropy(self.head(z), y).backward()
            self.opt.step()
        self.install(model)

    def install(self, model: CrossModalModel) -> None:
        """Copy the trained hidden layer into the model's N-way φ (its output layer stays fresh)."""
        with torch.no_grad():
            model.classifier.net[0].load_state_dict(self.head.net[0].state_dict())


# ---------------------------------------------------------------- meta-learning steps of the baselines
class OracleMeta:
    """Reptile over labeled N-way *target* tasks of meta-train concepts, updating e_t and φ together.

    It uses the same update rule as MAGMA's meta-alignment (``cfg.align_inner``, ``cfg.align_outer``,
    ``cfg.meta_batch``, ``cfg.fresh_batches``): only the tasks differ.
    """

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig):
        self.reptile = Reptile(model.parts("target", "classifier"), cfg.align_inner, cfg.align_outer)
        self.loss = target_loss(model)

    def __call__(self, model, data, concepts, cfg, epsilon, generator):
        tasks = sample_meta_batch(lambda: classification_batches(data.target, concepts, cfg, generator), cfg,
                                  cfg.align_inner)
        self.reptile.step(self.loss, tasks, epsilon, per_step=cfg.fresh_batches)


class ReconstructionMeta:
    """Reptile on an autoencoding loss over unlabeled meta-train target examples.

    A decoder maps e_t(x) back to a fixed-size summary of x (:func:`reconstruction_target`), standardised
    per feature; each task is a random batch of target examples. Labels are never read.
    """

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig, hidden: int = 128):
        train = torch.tensor(data.splits["meta_train"], device=data.target.labels.device)
        pool = torch.nonzero(torch.isin(data.target.labels, train)).flatten()
        targets = reconstruction_target(data.target.kind, *data.target.batch(pool))
        self.pool = pool
        self.targets = (targets - targets.mean(0)) / targets.std(0).clamp_min(1e-6)
        dim = model.classifier.net[0].in_features
        model.add_module("decoder", nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                                  nn.Linear(hidden, self.targets.shape[1])).to(pool.device))
        self.reptile = Reptile(model.parts("target", "decoder"), cfg.align_inner, cfg.align_outer)

        def loss(params, task):
            x, lengths, y = task
            return F.mse_loss(model.call("decoder", params, model.call("target", params, x, lengths)), y)
        self.loss = loss

    def __call__(self, model, data, concepts, cfg, epsilon, generator):
        batch = cfg.n_way * cfg.source_shots

        def draw():  # a reconstruction task is any batch of unlabeled examples
            rows = torch.randperm(len(self.pool), generator=generator)[:batch].to(self.pool.device)
            x, lengths = data.target.batch(self.pool[rows])
            return x, lengths, self.targets[rows]

        self.reptile.step(self.loss, sample_meta_batch(lambda: draw, cfg, cfg.align_inner), epsilon,
                          per_step=cfg.fresh_batches)


def reconstruction_target(kind: str, x: torch.Tensor, lengths: torch.Tensor, segments: int = 8,
                          buckets: int = 256) -> torch.Tensor:
    """A fixed-size summary of each input for the autoencoder to reconstruct: (B, D).

    image/vector: the input itself, flattened. audio: the mean log-mel of ``segments`` equal parts of
    the real frames, (B, n_mels·segments) — a coarse spectrogram. text: the character histogram over
    ``buckets`` hashed character ids, (B, buckets).
    """
    if kind in ("image", "vector"):
        return x.flatten(1).float()
    frames = torch.arange(x.shape[-1], device=x.device)
    real = frames < lengths[:, None]  # (B, T)
    if kind == "audio":
        part = (frames * segments) // lengths[:, None].clamp_min(1)  # (B, T) segment of each frame
        weights = (part[..., None] == torch.arange(segments, device=x.device)) & real[..., None]  # (B, T, S)
        weights = weights.float() / weights.sum(1, keepdim=True).clamp_min(1)
        return torch.einsum("bmt,bts->bms", x, weights).flatten(1)
    hist = ((x[..., None] % buckets) == torch.arange(buckets, device=x.device)) & real[..., None]
    return hist.float().sum(1) / lengths[:, None].clamp_min(1)


# ---------------------------------------------------------------- one entry point per approach
def target_budget(data: CrossModalDataset) -> int:
    """Target examples of the meta-train concepts: what every non-scratch approach may use."""
    train = torch.tensor(data.splits["meta_train"], device=data.target.labels.device)
    return int(torch.isin(data.target.labels, train).sum())


def train_approach(name: str, data: CrossModalDataset, cfg: MagmaConfig, seed: int = 0, dim: int = 64,
                   progress: bool | None = None) -> TrainedApproach:
    """Train the starting point of approach ``name`` (one of :data:`APPROACHES`) with the shared budget.

    The model lives on the device of ``data`` (move the dataset with ``data.to(device)`` first).
    """
    if name not in GROUPS:
        raise ValueError(f"approach must be one of {APPROACHES}, got {name!r}")
    with phase(f"{name} (seed {seed}): training", progress):
        return _train_approach(name, data, cfg, seed, dim, progress)


def _train_approach(name, data, cfg, seed, dim, progress) -> TrainedApproach:
    torch.manual_seed(seed)
    model = CrossModalModel.for_dataset(data, dim=dim, n_way=cfg.n_way).to(data.target.x.device)
    used, labels, history = target_budget(data), 0, {}
    if GROUPS[name] == "Cross" and name != "MAGMA":  # MAGMA's own entry point pre-trains e_s itself
        pretrain_source(model, data, cfg.source_pretrain_steps, seed=seed)
    if name in ("Random init", "Supervised learning"):
        used = 0
    elif name == "Unsup. meta-learning (reconstruct)":
        history = train_loop(model, data, cfg, [ReconstructionMeta], seed, progress, name)
        del model.decoder
    elif name == "Align + Classify":
        history = train_loop(model, data, cfg, [PlainAlignment, PlainClassifier], seed, progress, name)
    elif name == "Align + Meta Classify":
        history = train_loop(model, data, cfg, [PlainAlignment, MetaClassifier], seed, progress, name)
    elif name == "MAGMA":
        history = train_magma(model, data, cfg, seed, progress)
    else:  # Oracle
        history = train_loop(model, data, cfg, [OracleMeta], seed, progress, name)
        labels = used
    return TrainedApproach(name, model, used, labels, history)
