"""One runner per table and figure of the paper, returning tidy pandas frames and writing JSON + CSV.

=================  ===========================================================  =============  ===========
experiment         what it reproduces                                           data           --data full
=================  ===========================================================  =============  ===========
``image-audio``    Table 2: every approach, 1/5/10-shot, #target (labels)       numbers        esc50
``text-speech``    Table 4, plus Table-5-style sample predictions               languages      fleurs
``retrieval``      Table 3: R@1/5/10, median rank, cosine loss; a gallery       numbers        —
``noisy-labels``   Figure 3: accuracy vs symmetric target-label noise           numbers        esc50
``tradeoff``       the poster's alignment-vs-supervision analysis               concept world  —
``strong-weak``    strong (instance) vs weak (cluster) pairs on the same data   numbers        —
``text-image``     the poster's recipe table (ingredients → food photo)         —              recipes
=================  ===========================================================  =============  ===========

Every runner takes the same arguments (:func:`run`) and one :class:`Preset` decides every size, so
``quick`` (CPU, minutes; the book and CI use it) and ``full`` (the paper's protocol, for a GPU) share
one code path. Hyperparameters were chosen by looking at the *validation* concepts only; meta-test
concepts are touched by evaluation alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from magma_teach.baselines import (GROUPS, PlainAlignment, TrainedApproach, train_approach)
from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.data.conceptworld import concept_world
from magma_teach.data.episodes import AlignmentTask
from magma_teach.evaluate import cosine_alignment_loss, retrieval_metrics, symmetric_noise
from magma_teach.magma import (CrossModalModel, MagmaConfig, alignment_loss, finetune_predictor, show_progress,
                               meta_align_step, pretrain_source, train_loop)
from magma_teach.protocol import default_query_size, evaluation_tasks, run_protocol, summarize
from magma_teach.reptile import InnerLoop
from magma_teach.utils import pick_device, seed_everything


# ---------------------------------------------------------------- presets
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


PRESETS = {
    "tiny": Preset("tiny", iterations=4, validate_every=2, meta_batch=2, inner_steps=2, finetune_steps=3,
                   repeats=1, shots=(1, 5), source_pretrain_steps=5, noise_rates=(0.0, 0.5),
                   retrieval_k=(2,), tradeoff_pairs=(20, 60), tradeoff_noise=(0.0, 0.5), tradeoff_labels=(20,),
                   data_overrides={"numbers": {"high": 39, "per_concept": 12},
                                   "languages": {"languages": ["ar", "bg", "de", "el", "en", "es", "fi", "fr",
                                                               "hi", "it", "ja", "ko", "pl", "ru", "tr"],
                                                 "per_language": 12}}),
    "quick": Preset("quick", iterations=100, validate_every=25, meta_batch=8, inner_steps=5, finetune_steps=20,
                    repeats=3),
    "full": Preset("full", iterations=3000, validate_every=100, meta_batch=16, inner_steps=5, finetune_steps=30,
                   repeats=10, source_pretrain_steps=2000, patience=5, data="full",
                   noise_rates=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), tradeoff_pairs=(30, 60, 120, 240, 480, 960),
                   tradeoff_noise=(0.0, 0.2, 0.4, 0.6, 0.8), tradeoff_labels=(30, 120, 480)),
}

# How each benchmark forms alignment tasks. In numbers an image and an utterance of 42 share only
# the concept, so two pairs of one concept in a task would be each other's false negatives: one pair
# per concept, many concepts. In languages a sentence pairs with its own speech, and one pair per
# language makes the language the cue that tells a pair from the negatives.
# The full-data benchmarks: CIFAR→ESC-50 has only weak (cluster) pairs, 5 clusters × 4 clips a task;
# FLEURS and the recipes pair each text with its own recording or photo, like languages.
ALIGNMENT = {"numbers": dict(align_way=20, pairs_per_concept=1),
             "languages": dict(align_way=16, pairs_per_concept=1),
             "conceptworld": dict(align_way=5, pairs_per_concept=4),
             "esc50": dict(align_way=5, pairs_per_concept=4, weak=True),
             "fleurs": dict(align_way=16, pairs_per_concept=1),
             "recipes": dict(align_way=16, pairs_per_concept=1)}

# With ``--data full`` a runner written for an offline benchmark runs on its real counterpart.
FULL_DATA = {"numbers": "esc50", "languages": "fleurs"}


def magma_config(preset: Preset, data: CrossModalDataset, **changes) -> MagmaConfig:
    """The :class:`MagmaConfig` of a preset on a benchmark (validation-chosen learning rates).

    Tasks are as wide as the benchmark's evaluation tasks; alignment tasks use at most as many concepts
    as the meta-train split has.
    """
    alignment = dict(ALIGNMENT[data.name])
    alignment["align_way"] = min(alignment["align_way"], len(data.splits["meta_train"]))
    cfg = MagmaConfig(n_way=len(data.eval_tasks[0]),  # the benchmark's task size (5 but for fleurs)
        iterations=preset.iterations, validate_every=preset.validate_every, meta_batch=preset.meta_batch,
        align_inner=InnerLoop(preset.inner_steps, 3e-3), classify_inner=InnerLoop(preset.inner_steps, 3e-3),
        finetune=InnerLoop(preset.finetune_steps, 1e-3, betas=(0.9, 0.999)),
        source_pretrain_steps=preset.source_pretrain_steps, patience=preset.patience, **alignment)
    return replace(cfg, **changes)


# ---------------------------------------------------------------- results
@dataclass
class ExperimentResult:
    """What a runner returns: the main tidy ``rows`` plus named extra frames, and run metadata."""

    experiment: str
    preset: str
    data: str
    device: str
    seconds: float
    rows: pd.DataFrame
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"experiment": self.experiment, "preset": self.preset, "data": self.data, "device": self.device,
                "torch": torch.__version__, "seconds": round(self.seconds, 1),
                "rows": _records(self.rows), **{k: _records(v) for k, v in self.extras.items()}}

    def write(self, out_dir) -> Path:
        """Write ``<experiment>.json`` (everything) and ``<experiment>.csv`` (the rows); return the JSON path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.experiment}.json"
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))
        self.rows.to_csv(out / f"{self.experiment}.csv", index=False)
        return path

    @classmethod
    def read(cls, path) -> "ExperimentResult":
        """Load a result written by :meth:`write`."""
        blob = json.loads(Path(path).read_text())
        core = ("experiment", "preset", "data", "device", "torch", "seconds", "rows")
        extras = {k: pd.DataFrame(v) for k, v in blob.items() if k not in core}
        return cls(blob["experiment"], blob["preset"], blob["data"], blob["device"], blob["seconds"],
                   pd.DataFrame(blob["rows"]), extras)


def _records(frame) -> list:
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    return json.loads(frame.to_json(orient="records", force_ascii=False))


def paper_layout(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of (approach, shots, mean, std, ...) → the paper's table: type | approach | k-shot … | #target (labels)."""
    table = rows.assign(cell=rows["mean"].map("{:.1f}".format) + " ± " + rows["std"].map("{:.1f}".format))
    wide = table.pivot_table(index="approach", columns="shots", values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{k}-shot" for k in wide.columns]
    counts = table.groupby("approach", sort=False).first()
    wide["#target (labels)"] = [f"{int(counts.loc[a, 'target_samples'])} ({int(counts.loc[a, 'target_labels'])})"
                                for a in wide.index]
    wide.insert(0, "type", [GROUPS.get(a, "") for a in wide.index])
    order = {"Uni": 0, "Cross": 1, "Oracle": 2}
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: order.get(wide["type"].iloc[i], 3))]
    wide = wide.reset_index()
    return wide[["type", "approach", *[c for c in wide.columns if c not in ("type", "approach")]]]


# ---------------------------------------------------------------- shared pieces
@dataclass
class Context:
    """Everything a runner needs: preset, device, seed, data choice, cache and progress settings."""

    preset: Preset
    device: torch.device
    seed: int
    data: str = "offline"
    cache_dir: str | None = None
    progress: bool | None = None
    data_settings: dict = field(default_factory=dict)  # changes to the benchmark's config (``--set``)

    def benchmark(self, name: str, needs_pairs: bool = False) -> CrossModalDataset:
        """The dataset a runner asks for by its offline ``name``; with ``data="full"`` its real counterpart
        (:data:`FULL_DATA`), downloaded on first use. ``needs_pairs``: the runner needs instance pairs."""
        from magma_teach.data.registry import FULL_BENCHMARKS, load

        if self.data == "full" and needs_pairs:  # checked before any download
            raise ValueError("this experiment needs instance pairs, which the full image→audio data "
                             "(CIFAR/ESC-50, weak pairs only) does not have; use --data offline")
        if self.data == "full" and name not in FULL_BENCHMARKS:
            if name not in FULL_DATA:
                raise ValueError(f"this experiment runs on {name!r} only; it has no full-data version "
                                 f"(use --data offline)")
            name = FULL_DATA[name]
        overrides = {**(self.preset.data_overrides.get(name, {}) if self.data == "offline" else {}),
                     **self.data_settings}
        data = load(name, preset="full" if self.preset.data == "full" else "quick", seed=self.seed,
                    cache_dir=self.cache_dir, progress=show_progress(self.progress), **overrides)
        return data.to(self.device)


def few_shot_rows(trained: TrainedApproach, data: CrossModalDataset, cfg: MagmaConfig, ctx: Context,
                  label_noise: float = 0.0) -> pd.DataFrame:
    """Evaluate one trained approach with the shared protocol → rows (approach, shots, mean, std, counts)."""
    results = run_protocol(finetune_predictor(trained.model, cfg.finetune), data.target, data.eval_tasks,
                           shots=ctx.preset.shots, repeats=ctx.preset.repeats, seed=ctx.seed, label_noise=label_noise)
    table = summarize(results)
    return table.assign(approach=trained.name, group=trained.group, target_samples=trained.target_samples,
                        target_labels=trained.target_labels)[
        ["approach", "group", "shots", "mean", "std", "target_samples", "target_labels"]]


def _train(name, data, cfg, ctx) -> TrainedApproach:
    return train_approach(name, data, cfg, seed=ctx.seed, progress=ctx.progress)


def _comparison(benchmark: str, first: str, ctx: Context):
    data = ctx.benchmark(benchmark)
    cfg = magma_config(ctx.preset, data)
    approaches = [first, "Unsup. meta-learning (reconstruct)", "Align + Classify", "Align + Meta Classify",
                  "MAGMA", "Oracle"]
    trained = {a: _train(a, data, cfg, ctx) for a in approaches}
    rows = pd.concat([few_shot_rows(t, data, cfg, ctx) for t in trained.values()], ignore_index=True)
    return data, cfg, trained, rows


# ---------------------------------------------------------------- the runners
def image_audio(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 2 on ``numbers``: every approach at 1/5/10 shots with the target data it used."""
    _, _, _, rows = _comparison("numbers", "Unsup. pre-training", ctx)
    return rows, {}


def text_speech(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 4 on ``languages``, plus Table-5-style predictions of MAGMA and the Oracle after 5 shots."""
    data, cfg, trained, rows = _comparison("languages", "Supervised learning", ctx)
    return rows, {"predictions": sample_predictions(data, cfg, trained, ctx)}


def text_image(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """The poster's recipe table on Yummly-28K (ingredients text → food photo); full data only."""
    if ctx.data != "full":
        raise ValueError("text-image runs on the Yummly-28K recipes only: add --data full")
    _, _, _, rows = _comparison("recipes", "Unsup. pre-training", ctx)
    return rows, {}


def sample_predictions(data, cfg, trained, ctx, shots: int = 5, per_task: int = 2) -> pd.DataFrame:
    """For the first queries of every evaluation task: the sentence, its language, MAGMA's and the Oracle's guess."""
    k = min(shots, max(ctx.preset.shots))
    n_query = default_query_size(data.target, data.eval_tasks, ctx.preset.shots)
    g = lambda: torch.Generator().manual_seed(ctx.seed * 7 + 5)  # noqa: E731 - same draw for both calls
    tasks = evaluation_tasks(data.target, data.eval_tasks, k, n_query, g())
    proxy = Modality("vector", torch.arange(len(data.target)), data.target.lengths.cpu(), data.target.labels.cpu())
    indices = evaluation_tasks(proxy, data.eval_tasks, k, n_query, g()).query[0]  # the same draw, as indices
    guesses = {a: finetune_predictor(trained[a].model, cfg.finetune)(tasks).cpu() for a in ("MAGMA", "Oracle")}
    rows, seen = [], set()
    for t, concepts in enumerate(data.eval_tasks):
        for q in range(per_task):
            j = q * n_query  # first query of concept q of this task
            name = lambda label: data.class_names[concepts[int(label)]]  # noqa: E731
            if int(indices[t, j]) in seen:  # tasks share languages; show each sentence once
                continue
            seen.add(int(indices[t, j]))
            rows.append({"task": t, "text": data.info["texts"][int(indices[t, j])],
                         "truth": name(tasks.query_y[t, j]), "MAGMA": name(guesses["MAGMA"][t, j]),
                         "Oracle": name(guesses["Oracle"][t, j])})
    return pd.DataFrame(rows)


def retrieval(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Table 3 on ``numbers``: speech → image retrieval over unseen numbers after K-pair adaptation.

    For each of No align (no alignment before meta-test), Align (plain contrastive alignment on the
    meta-train pairs) and MAGMA (meta-alignment), the encoders are adapted on K pairs of every
    meta-test number, then each held-out utterance queries a gallery of the held-out images (10 per
    number). The true match is the image paired with the utterance, so retrieving another image of
    the same number counts as a miss, as in the paper; ``concept R@1`` reports the looser hit rate.
    """
    data = ctx.benchmark("numbers", needs_pairs=True)
    cfg = magma_config(ctx.preset, data)
    starts = {}
    for name in ("No align", "Align", "MAGMA"):
        torch.manual_seed(ctx.seed)
        model = CrossModalModel.for_dataset(data, n_way=cfg.n_way).to(ctx.device)
        pretrain_source(model, data, cfg.source_pretrain_steps, seed=ctx.seed)
        steps = {"No align": [], "Align": [PlainAlignment(model, cfg)], "MAGMA": [meta_align_step]}[name]
        if steps:
            train_loop(model, data, cfg, steps, ctx.seed, ctx.progress, f"retrieval: {name}")
        starts[name] = model
    rows, gallery = [], None
    for k in ctx.preset.retrieval_k:
        adapt, held_out = _retrieval_split(data, k, ctx.seed)
        for name, model in starts.items():
            adapted = _adapt_alignment(model, data, adapt, cfg)
            metrics, sim = _retrieve(adapted, data, held_out)
            rows.append({"K": k, "experiment": name, **metrics})
            if name == "MAGMA" and k == max(ctx.preset.retrieval_k):
                gallery = _gallery(data, held_out, sim)
    return pd.DataFrame(rows), {"gallery": gallery}


def _retrieval_split(data, k, seed, held: int = 10):
    """Per meta-test number: K pairs to adapt on, then up to ``held`` other pairs for queries and gallery."""
    g = torch.Generator().manual_seed(seed + 99)
    adapt, held_out = [], []
    for c in data.splits["meta_test"]:
        pairs = data.pairs_of([c])
        pairs = pairs[torch.randperm(len(pairs), generator=g).to(pairs.device)]
        adapt.append(pairs[:k])
        held_out.append(pairs[k:k + held])
    return torch.cat(adapt), torch.cat(held_out)


def _adapt_alignment(model, data, pairs, cfg):
    """A copy of ``model`` whose encoders took ``cfg.finetune.steps`` alignment steps on ``pairs``.

    Each step uses one random pair per number (no false negatives, as in meta-training).
    """
    import copy

    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parts("source", "target").values(), lr=cfg.finetune.lr)
    loss_fn = alignment_loss(model, cfg.temperature, weak=False)
    g = torch.Generator().manual_seed(0)
    concept_of = data.source.labels[pairs[:, 0]]
    groups = [torch.nonzero(concept_of == c).flatten() for c in torch.unique(concept_of)]
    for _ in range(cfg.finetune.steps):
        rows = torch.stack([grp[torch.randint(len(grp), (1,), generator=g).to(grp.device)] for grp in groups]).flatten()
        chosen = pairs[rows]
        ids = torch.arange(len(chosen), device=chosen.device)
        task = AlignmentTask(data.source.batch(chosen[:, 0]), data.target.batch(chosen[:, 1]), ids, ids)
        opt.zero_grad()
        loss_fn(model.parts("source", "target"), task).backward()
        opt.step()
    return model


@torch.no_grad()
def _retrieve(model, data, pairs):
    z_s = model.source(*data.source.batch(pairs[:, 0]))
    z_t = model.target(*data.target.batch(pairs[:, 1]))
    sim = F.normalize(z_t, dim=-1) @ F.normalize(z_s, dim=-1).T  # queries: speech; gallery: images
    metrics = retrieval_metrics(sim.cpu())
    concept = data.source.labels[pairs[:, 0]]
    metrics["concept R@1"] = 100.0 * float((concept[sim.argmax(1)] == concept).float().mean())
    metrics["cos"] = float(cosine_alignment_loss(z_s, z_t))
    return metrics, sim.cpu()


def _gallery(data, pairs, sim, n_queries: int = 5, top: int = 5) -> pd.DataFrame:
    """For a few spoken queries: their target index and the source indices of the top-ranked images."""
    step = max(1, len(pairs) // n_queries)
    rows = []
    for q in range(0, step * n_queries, step):
        best = sim[q].topk(top).indices
        rows.append({"query_target": int(pairs[q, 1]), "query_text": data.info["texts"][int(pairs[q, 1])],
                     "true_source": int(pairs[q, 0]),
                     "top_sources": [int(pairs[i, 0]) for i in best],
                     "top_concepts": [data.class_names[int(data.source.labels[pairs[i, 0]])] for i in best]})
    return pd.DataFrame(rows)


def noisy_labels(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """Figure 3 on ``numbers``: MAGMA vs Oracle under symmetric noise on the target labels.

    Noise hits every target label a method sees: the Oracle's labeled meta-train target data and, for
    both methods, the k support labels at meta-test. MAGMA reads no target label in meta-training, so
    it is trained once; the Oracle is retrained at every noise rate.
    """
    data = ctx.benchmark("numbers")
    cfg = magma_config(ctx.preset, data)
    magma = _train("MAGMA", data, cfg, ctx)
    rows = []
    for rate in ctx.preset.noise_rates:
        oracle = _train("Oracle", _with_noisy_target_labels(data, rate, ctx.seed), cfg, ctx)
        for trained in (magma, oracle):
            rows.append(few_shot_rows(trained, data, cfg, ctx, label_noise=rate).assign(noise=rate))
    return pd.concat(rows, ignore_index=True), {}


def _with_noisy_target_labels(data: CrossModalDataset, rate: float, seed: int) -> CrossModalDataset:
    """A copy of ``data`` whose meta-train target labels suffer symmetric noise among meta-train concepts."""
    if rate == 0:
        return data
    concepts = torch.tensor(data.splits["meta_train"], device=data.target.labels.device)
    train = torch.isin(data.target.labels, concepts)
    position = torch.searchsorted(concepts, data.target.labels[train])  # concepts are sorted
    noisy = concepts[symmetric_noise(position, len(concepts), rate, seed)]
    labels = data.target.labels.clone()
    labels[train] = noisy
    target = Modality(data.target.kind, data.target.x, data.target.lengths, labels)
    return replace(data, target=target)


def tradeoff(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """The poster's analysis on the concept world (5-shot accuracy of the target).

    1. more strong pairs → accuracy, against the source modality's own few-shot accuracy;
    2. pairing noise → accuracy;
    3. weak pairs (cluster level) of growing number against supervised target meta-learning (the
       Oracle's recipe) with a fixed number of target labels.
    """
    if ctx.data == "full":
        raise ValueError("tradeoff runs on the synthetic concept world only (use --data offline)")
    preset = replace(ctx.preset, shots=(5,))
    ctx = replace(ctx, preset=preset)
    base = dict(seed=ctx.seed)
    rows = []

    def magma_score(pairs_per_concept=None, **world):
        data = concept_world(**base, **world).to(ctx.device)
        changes = {"weak": True, "pairs_per_concept": 4} if world.get("pairing") == "weak" else {}
        if pairs_per_concept:  # scarce pairs: one per concept, from the meta-train concepts that have one
            counts = torch.bincount(data.source.labels[data.pairs[:, 0]], minlength=data.num_classes)
            with_pairs = int((counts[data.splits["meta_train"]] >= pairs_per_concept).sum())
            changes = {"pairs_per_concept": pairs_per_concept, "align_way": min(16, with_pairs)}
        cfg = magma_config(preset, data, source_pretrain_steps=0, **changes)
        trained = _train("MAGMA", data, cfg, ctx)
        return data, cfg, trained, few_shot_rows(trained, data, cfg, ctx).iloc[0]

    for n in preset.tradeoff_pairs:
        data, cfg, trained, row = magma_score(n_pairs=n, pairs_per_concept=1)
        rows.append({"study": "pairs", "x": n, "approach": "MAGMA (strong pairs)", "mean": row["mean"], "std": row["std"]})
    # The reference: the source modality's own few-shot accuracy with the same protocol.
    source = run_protocol(finetune_predictor(trained.model, cfg.finetune, encoder="source"), data.source,
                          data.eval_tasks, shots=(5,), repeats=preset.repeats, seed=ctx.seed)
    src = summarize(source).iloc[0]
    rows.append({"study": "pairs", "x": None, "approach": "source task (reference)", "mean": src["mean"], "std": src["std"]})
    for rate in preset.tradeoff_noise:
        row = magma_score(pairing_noise=rate)[3]
        rows.append({"study": "pairing noise", "x": rate, "approach": "MAGMA (strong pairs)", "mean": row["mean"], "std": row["std"]})
    for n in preset.tradeoff_pairs:
        row = magma_score(pairing="weak", n_pairs=n)[3]
        rows.append({"study": "weak vs supervised", "x": n, "approach": "MAGMA (weak pairs)", "mean": row["mean"], "std": row["std"]})
    for n_labels in preset.tradeoff_labels:
        data = _labeled_subset(concept_world(**base).to(ctx.device), n_labels, ctx.seed)
        cfg = magma_config(preset, data, source_pretrain_steps=0, source_shots=1)  # 1-shot tasks: 2 labels a concept
        row = few_shot_rows(_train("Oracle", data, cfg, ctx), data, cfg, ctx).iloc[0]
        rows.append({"study": "weak vs supervised", "x": n_labels, "approach": f"supervised target ({n_labels} labels)",
                     "mean": row["mean"], "std": row["std"]})
    return pd.DataFrame(rows), {}


def _labeled_subset(data: CrossModalDataset, n_labels: int, seed: int) -> CrossModalDataset:
    """Keep ``n_labels`` labeled target examples of the meta-train concepts, at least 2 per concept.

    The labels go to as many meta-train concepts as can each get two (one to adapt on, one to test
    on in a 1-shot task); the meta-train split shrinks to those concepts. Dropped examples keep their
    rows but get label -1, which no task asks for, so every index stays valid.
    """
    g = torch.Generator().manual_seed(seed)
    train = data.splits["meta_train"]
    concepts = [train[i] for i in torch.randperm(len(train), generator=g)[:max(1, min(len(train), n_labels // 2))]]
    per = n_labels // len(concepts)
    t = data.target
    labels = t.labels.clone()
    for c in train:
        idx = t.indices_of(c).cpu()
        keep = per if c in concepts else 0
        labels[idx[torch.randperm(len(idx), generator=g)[keep:]].to(labels.device)] = -1
    splits = {**data.splits, "meta_train": sorted(concepts)}
    return replace(data, target=Modality(t.kind, t.x, t.lengths, labels), splits=splits)


def strong_weak(ctx: Context) -> tuple[pd.DataFrame, dict]:
    """MAGMA with strong (instance) pairs vs weak (same decade) pairs on ``numbers``."""
    data = ctx.benchmark("numbers", needs_pairs=True)
    decades = int(torch.unique(data.clusters[data.splits["meta_train"]]).numel())
    weak = {"weak": True, "align_way": min(5, decades), "pairs_per_concept": 4}  # 5 decades x 4 pairs a task
    rows = []
    for label, changes in (("MAGMA (strong pairs)", {}), ("MAGMA (weak pairs)", weak)):
        cfg = magma_config(ctx.preset, data, **changes)
        trained = _train("MAGMA", data, cfg, ctx)
        rows.append(few_shot_rows(trained, data, cfg, ctx).assign(approach=label))
    return pd.concat(rows, ignore_index=True), {}


# Experiments that exist only on downloaded data (they refuse data="offline").
FULL_DATA_ONLY = ("text-image",)

EXPERIMENTS: dict[str, tuple[Callable, str]] = {
    "image-audio": (image_audio, "Table 2: image -> audio on numbers, every approach, 1/5/10-shot"),
    "text-speech": (text_speech, "Table 4 + Table 5: text -> speech language ID on languages"),
    "retrieval": (retrieval, "Table 3: speech -> image retrieval (R@k, median rank, cosine loss) + gallery"),
    "noisy-labels": (noisy_labels, "Figure 3: MAGMA vs Oracle under symmetric target-label noise"),
    "tradeoff": (tradeoff, "Poster: alignment vs supervision (pairs, pairing noise, weak vs labels)"),
    "strong-weak": (strong_weak, "Strong (instance) vs weak (same-decade) pairs on numbers"),
    "text-image": (text_image, "Poster: text -> image on Yummly-28K recipes (needs --data full)"),
}


def run(experiment: str, preset: str = "quick", data: str = "offline", device: str = "auto", seed: int = 0,
        out: str | Path | None = None, cache_dir: str | None = None, progress: bool | None = None,
        data_settings: dict | None = None) -> ExperimentResult:
    """Run one experiment; write ``<experiment>.json`` and ``.csv`` under ``out`` when given.

    ``data_settings`` change the benchmark's config, e.g. ``{"archive_sha256": "sha256:…"}`` for the
    recipes or ``{"per_language": 40}`` (keys as in the ``DEFAULTS`` of the benchmark's module).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {experiment!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(p for p in PRESETS)}, got {preset!r}")
    if data not in ("offline", "full"):
        raise ValueError(f"data must be 'offline' or 'full', got {data!r}")
    seed_everything(seed)
    ctx = Context(PRESETS[preset], pick_device(device), seed, data, cache_dir, progress, dict(data_settings or {}))
    start = time.perf_counter()
    rows, extras = EXPERIMENTS[experiment][0](ctx)
    result = ExperimentResult(experiment, preset, data, _device_name(ctx.device), time.perf_counter() - start,
                              rows, {k: v for k, v in extras.items() if v is not None})
    if out is not None:
        result.write(out)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"
