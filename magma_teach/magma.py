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
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import trange

from magma_teach.data.base import CrossModalDataset
from magma_teach.data.cache import cached, code_fingerprint, data_fingerprint, models_cached, tensors_fingerprint
from magma_teach.data.episodes import (ClassificationTask, alignable, sample_alignment_task,
                                       sample_classification_task, stack_tasks)
from magma_teach.encoders import Classifier, encoder_for
from magma_teach.losses import DEFAULT_TEMPERATURE, check_positives, strong_nce, weak_nce
from magma_teach.reptile import EpsilonSchedule, InnerLoop, OuterUpdate, Params, Reptile, batched_adapt
from magma_teach.utils import check_positive, check_range, show_progress


class CrossModalModel(nn.Module):
    """The three learned parts: source encoder e_s, target encoder e_t and shared classifier φ.

    A part may share tensors with another (``CrossModalModel(enc, enc, φ)``: one encoder for both
    modalities). :meth:`parts` then lists each shared tensor once, under the name it has in the first
    part that holds it, and :meth:`call` finds it there, so a functional gradient through both uses
    is the *sum* of both uses' gradients and a Reptile update moves the tensor once.
    """

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

    def _aliases(self) -> dict[str, str]:
        """``"<part>.<param>"`` → the first name of the same tensor, for every tensor held twice."""
        first, aliases = {}, {}
        for part, module in self._modules.items():  # named_children() would skip a module seen twice
            for k, p in module.named_parameters(remove_duplicate=False):
                name = f"{part}.{k}"
                if id(p) in first and first[id(p)] != name:
                    aliases[name] = first[id(p)]
                first.setdefault(id(p), name)
        return aliases

    def parts(self, *names: str) -> Params:
        """The live parameters of the named parts, keyed ``"<part>.<param>"`` (Reptile updates them in place).

        A tensor shared by several parts appears once, under its first name (see the class docstring).
        """
        aliases = self._aliases()
        out = {}
        for n in names:
            for k, p in getattr(self, n).named_parameters(remove_duplicate=False):
                key = aliases.get(f"{n}.{k}", f"{n}.{k}")
                out.setdefault(key, p)
        return out

    def call(self, part: str, params: Params, *args):
        """Run one part with parameters from a ``parts()``-style dict (for vmap/grad)."""
        own, aliases = {}, None
        for k, _ in getattr(self, part).named_parameters(remove_duplicate=False):
            key = f"{part}.{k}"
            if key not in params:
                # Aliases only for a name that is missing: finding them compares the tensors' ids, and a
                # compiled inner step (reptile's fast path) would then be specialised to this one model.
                aliases = self._aliases() if aliases is None else aliases
                key = aliases.get(key, key)
            if key in params:
                own[k] = params[key]
        return functional_call(getattr(self, part), own, args, tie_weights=False)

    def save(self, path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path) -> "CrossModalModel":
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return self


@dataclass
class MagmaConfig:
    """Every knob of meta-training and meta-test adaptation (defaults = the quick preset's).

    The update-rule options (see :mod:`magma_teach.reptile`): ``align_inner.carry_state`` /
    ``classify_inner.carry_state`` (inner Adam state carried across tasks), ``align_outer`` /
    ``classify_outer`` (ε-interpolation or an optimizer on the pseudo-gradient), ``meta_batch`` (T, any T ≥ 1) and ``fresh_batches`` (a new
    minibatch of the same task — the same concepts, new examples — at every inner step, instead of one
    batch reused). Pairing: ``weak=False`` is eq. 3 over
    instance pairs; ``weak=True`` is eq. 4 over groups, where a group is a cluster of concepts
    (``groups="cluster"``, ``data.clusters``) or a single concept (``groups="concept"``: several source
    and target examples of one concept are all positives of each other, so no pair of one concept is
    ever a false negative).
    """

    iterations: int = 300
    meta_batch: int = 8  # T tasks per Reptile update
    n_way: int = 5
    align_way: int | None = None  # concepts (or groups) per alignment task (None: n_way)
    pairs_per_concept: int = 4  # pairs (or examples per modality) of each concept/group in an alignment task
    weak: bool = False  # eq. 4 (group-level pairs) instead of eq. 3 (instance pairs)
    groups: str = "cluster"  # what a weak group is: "cluster" (data.clusters) or "concept"
    pairing_noise: float = 0.0
    source_shots: int = 5
    temperature: float = DEFAULT_TEMPERATURE
    align_inner: InnerLoop = field(default_factory=lambda: InnerLoop(steps=5, lr=1e-3))
    classify_inner: InnerLoop = field(default_factory=lambda: InnerLoop(steps=5, lr=3e-3))
    epsilon: EpsilonSchedule = field(default_factory=lambda: EpsilonSchedule(1.0, 0.1))
    align_outer: OuterUpdate = field(default_factory=OuterUpdate)  # how e_s, e_t move (and the Oracle's e_t, φ)
    classify_outer: OuterUpdate = field(default_factory=OuterUpdate)  # how φ moves
    fresh_batches: bool = False  # a fresh minibatch of the task's concepts at every inner step (else one reused)
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
        if isinstance(self.source_pretrain_steps, bool) or not isinstance(self.source_pretrain_steps, int) \
                or self.source_pretrain_steps < 0:
            raise ValueError(f"source_pretrain_steps must be an integer >= 0, got {self.source_pretrain_steps!r}")
        check_positive("temperature", self.temperature)
        check_range("pairing_noise", self.pairing_noise, 0.0, 1.0)
        if self.groups not in GROUPINGS:
            raise ValueError(f"groups must be one of {GROUPINGS}, got {self.groups!r}")
        for name in ("weak", "fresh_batches"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, kind in (("align_inner", InnerLoop), ("classify_inner", InnerLoop), ("finetune", InnerLoop),
                           ("epsilon", EpsilonSchedule), ("align_outer", OuterUpdate),
                           ("classify_outer", OuterUpdate)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__}, got {getattr(self, name)!r}")

    def with_(self, **changes) -> "MagmaConfig":
        return replace(self, **changes)


GROUPINGS = ("cluster", "concept")


# ---------------------------------------------------------------- the three functional losses
def alignment_loss(model: CrossModalModel, temperature: float, weak: bool):
    """``loss(params, task)`` on one :class:`AlignmentTask`: eq. 4 when ``weak`` else eq. 3.

    The returned function carries ``check_tasks(stacked_tasks)``, which task-batched Reptile calls
    before ``vmap`` (where a missing positive could not be detected, and would become NaN).
    """
    def loss(params, task):
        z_s = model.call("source", params, *task.source)
        z_t = model.call("target", params, *task.target)
        if weak:
            return weak_nce(z_s, z_t, task.groups_s, task.groups_t, temperature)
        return strong_nce(z_s, z_t, temperature)

    loss.check_tasks = lambda tasks: check_positives(tasks.groups_s, tasks.groups_t)
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
    """Embed a stacked batch (..., B, *example) with one part of the model → (..., B, dim).

    The leading axes are those of ``lengths`` (T tasks, or T tasks × S steps, then B examples).
    """
    x, lengths = batch
    z = getattr(model, part)(x.flatten(0, lengths.dim() - 1), lengths.flatten())
    return z.unflatten(0, lengths.shape)


def sample_meta_batch(task, cfg: MagmaConfig, inner: InnerLoop):
    """T tasks stacked (T, ...). ``task()`` returns ``draw``, a function that draws one batch of a freshly
    chosen task; with ``cfg.fresh_batches`` each task draws one batch per inner step, (T, S, ...), all
    from the same task (the same concepts), else one batch reused for every step."""
    def one():
        draw = task()
        return stack_tasks([draw() for _ in range(inner.steps)]) if cfg.fresh_batches else draw()
    return stack_tasks([one() for _ in range(cfg.meta_batch)])


def alignment_batches(data: CrossModalDataset, concepts, cfg: MagmaConfig, generator):
    """``draw()`` for one alignment task: its concepts (or groups) are chosen once, each call draws new examples.

    Instance pairs: ``align_way`` concepts with at least ``pairs_per_concept`` pairs. Weak pairs:
    ``align_way`` groups with examples in both modalities, and every concept of those groups.
    """
    n_way = cfg.align_way or cfg.n_way
    concepts = torch.as_tensor(list(concepts), dtype=torch.long, device=data.clusters.device)
    if cfg.weak:  # a group needs examples in both modalities, possibly of different concepts (CIFAR ↔ ESC-50)
        cluster = data.clusters[concepts]
        usable = alignable(data)  # with pairs listed, only paired examples may align
        with_source = torch.unique(cluster[torch.isin(concepts, data.source.labels[usable[0]])])
        with_target = torch.unique(cluster[torch.isin(concepts, data.target.labels[usable[1]])])
        groups = with_source[torch.isin(with_source, with_target)]
        chosen = groups[torch.randperm(len(groups), generator=generator)[:n_way].to(groups.device)]
        task = concepts[torch.isin(cluster, chosen)].tolist()
    else:
        counts = torch.bincount(data.source.labels[data.pairs[:, 0]], minlength=data.num_classes)
        eligible = concepts[counts[concepts] >= cfg.pairs_per_concept]
        task = eligible[torch.randperm(len(eligible), generator=generator)[:n_way].to(eligible.device)].tolist()
    n_way = min(n_way, len(task)) if not cfg.weak else min(n_way, len(groups))
    return lambda: sample_alignment_task(data, task, n_way, cfg.pairs_per_concept, generator, weak=cfg.weak,
                                         pairing_noise=cfg.pairing_noise)


def classification_batches(modality, concepts, cfg: MagmaConfig, generator):
    """``draw()`` for one N-way task of ``modality``: N concepts chosen once, each call draws new shots of them
    (labels 0..N-1 keep their meaning across the task's batches)."""
    chosen = sample_classification_task(modality, concepts, cfg.n_way, 1, 1, generator).concepts.tolist()
    return lambda: sample_classification_task(modality, chosen, cfg.n_way, cfg.source_shots, 1, generator,
                                              fixed_concepts=True)


def alignment_view(data: CrossModalDataset, cfg: MagmaConfig) -> CrossModalDataset:
    """``data`` as the alignment sampler should see it: with concept groups, every concept is its own cluster."""
    if cfg.weak and cfg.groups == "concept":
        return replace(data, clusters=torch.arange(data.num_classes, device=data.clusters.device))
    return data


class MetaAlignment:
    """Lines 3-6 of Algorithm 1: T alignment tasks → one Reptile update of e_s and e_t."""

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig):
        self.reptile = Reptile(model.parts("source", "target"), cfg.align_inner, cfg.align_outer)
        self.loss = alignment_loss(model, cfg.temperature, cfg.weak)

    def __call__(self, model, data, concepts, cfg: MagmaConfig, epsilon: float, generator) -> None:
        view = alignment_view(data, cfg)
        tasks = sample_meta_batch(lambda: alignment_batches(view, concepts, cfg, generator), cfg, cfg.align_inner)
        self.reptile.step(self.loss, tasks, epsilon, per_step=cfg.fresh_batches)


class MetaClassifier:
    """Lines 7-10 of Algorithm 1: T source classification tasks → one Reptile update of φ on top of e_s."""

    def __init__(self, model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig):
        self.reptile = Reptile(model.parts("classifier"), cfg.classify_inner, cfg.classify_outer)
        self.loss = classifier_loss(model)

    def __call__(self, model, data, concepts, cfg: MagmaConfig, epsilon: float, generator) -> None:
        tasks = sample_meta_batch(lambda: classification_batches(data.source, concepts, cfg, generator), cfg,
                                  cfg.classify_inner)
        z = embed(model, "source", tasks.support)  # e_s is fixed here, as in Algorithm 1
        self.reptile.step(self.loss, (z, tasks.support_y), epsilon, per_step=cfg.fresh_batches)


# The step names of earlier versions; train_loop instantiates a step class for each run.
meta_align_step, meta_classify_step = MetaAlignment, MetaClassifier


def train_magma(model: CrossModalModel, data: CrossModalDataset, cfg: MagmaConfig, seed: int = 0,
                progress: bool | None = None) -> dict:
    """Meta-train ``model`` on ``data`` with Algorithm 1 (meta-alignment, then meta-classifier, per iteration).

    With ``cfg.source_pretrain_steps`` > 0 the source encoder is first pre-trained on source labels
    (:func:`pretrain_source`), the analogue of the paper's ImageNet-initialised image encoder.
    """
    pretrain_source(model, data, cfg.source_pretrain_steps, seed=seed)
    return train_loop(model, data, cfg, [MetaAlignment, MetaClassifier], seed, progress, "MAGMA")


def pretrain_source(model: CrossModalModel, data: CrossModalDataset, steps: int, lr: float = 1e-3,
                    batch: int = 64, seed: int = 0) -> None:
    """Supervised pre-training of e_s on the labeled source examples of the meta-train concepts.

    The source modality is the abundant, labeled one: in the paper its encoder starts from an
    ImageNet-trained ResNet. Offline we have no such network, so we give e_s the same head start from
    the source labels it is allowed to use (a temporary linear head over all meta-train concepts,
    discarded afterwards). Algorithm 1 itself then starts from this e_s. No target data is touched.

    Every approach of a table starts from the same e_s, so on a CPU the result is kept in the disk
    cache (unless ``$MAGMA_TEACH_MODEL_CACHE`` is ``0``) under everything it depends on (the starting weights of e_s, the data, ``steps``, ``lr``,
    ``batch``, ``seed``, the code and torch's thread count): a second call with the same inputs loads it.
    """
    if steps <= 0:
        return
    start = model.source.state_dict()

    def build() -> dict:
        with torch.random.fork_rng(devices=[]):  # self-contained: the caller's random stream is untouched
            torch.manual_seed(seed)
            _train_source(model, data, steps, lr, batch, seed)
        return {k: v.detach().cpu().clone() for k, v in model.source.state_dict().items()}

    if not models_cached(data.source.x.device):
        build()
        return
    key = {"source": tensors_fingerprint(start), "data": data_fingerprint(data), "steps": steps, "lr": lr,
           "batch": batch, "seed": seed, "code": code_fingerprint(), "threads": torch.get_num_threads()}
    model.source.load_state_dict(cached("pretrained-source", key, build))


def _train_source(model, data, steps, lr, batch, seed) -> None:
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

    Each step is called as ``step(model, data, meta_train_concepts, cfg, epsilon, generator)``; a step
    given as a class is first built as ``Step(model, data, cfg)`` (steps that keep state between
    iterations, such as an optimizer, are classes). MAGMA
    passes its two Reptile updates, the baselines pass theirs, so every method shares this loop, its
    budget and its selection rule. The model ends with the parameters that scored best on validation.
    Returns ``{"iteration": [...], "val_accuracy": [...], "best_iteration": int}``.
    """
    generator = torch.Generator().manual_seed(seed)
    concepts = data.splits["meta_train"]
    steps = [step(model, data, cfg) if isinstance(step, type) else step for step in steps]
    history = {"iteration": [], "val_accuracy": [], "best_iteration": 0}
    best, best_state = -1.0, None
    for it in trange(cfg.iterations, desc=desc, disable=not show_progress(progress), leave=False):
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
    from magma_teach.protocol import task_accuracy  # the protocol's own scoring, ties shared

    return float(task_accuracy(finetune_predictor(model, cfg.finetune, scores=True)(tasks), tasks.query_y).mean())


# ---------------------------------------------------------------- meta-test
def finetune_predictor(model: CrossModalModel, finetune: InnerLoop, encoder: str = "target", scores: bool = False):
    """``predict(tasks) -> (T, Q)`` predicted labels for T stacked :class:`ClassificationTask` s.

    Each task fine-tunes its own copy of ``encoder`` and φ on its k labeled support samples (batched
    over tasks with :func:`batched_adapt`), then labels its query samples. The model is not changed.
    With ``scores=True`` it returns the (T, Q, N) logits instead, so that the protocol can share a tie
    between labels rather than count the first one (:func:`magma_teach.protocol.run_protocol`).
    """
    def predict(tasks: ClassificationTask) -> torch.Tensor:
        start = {k: v.detach() for k, v in model.parts(encoder, "classifier").items()}
        fast = batched_adapt(target_loss(model, encoder), start, tasks, finetune)

        def logits(params, query):
            return model.call("classifier", params, model.call(encoder, params, *query))

        with torch.no_grad():
            out = vmap(logits)(fast, tasks.query)
        return out if scores else out.argmax(-1)
    return predict


def _min_per_concept(modality, concepts) -> int:
    return min(int((modality.labels == c).sum()) for c in concepts)


def meta_train_labels(data: CrossModalDataset) -> torch.Tensor:
    """(num_classes + 1,) map from concept id to its index among the meta-train concepts, -1 elsewhere.

    Used to train a classifier over *all* meta-train concepts at once (labels 0..C_train-1). The extra
    last entry is -1 for examples whose label is -1 (unlabeled: what :func:`magma_teach.tuning.
    without_meta_test` makes of meta-test examples), which would otherwise index the last concept.
    """
    concepts = torch.tensor(data.splits["meta_train"], device=data.source.labels.device)
    label_of = torch.full((data.num_classes + 1,), -1, dtype=torch.long, device=concepts.device)
    label_of[concepts] = torch.arange(len(concepts), device=concepts.device)
    return label_of
