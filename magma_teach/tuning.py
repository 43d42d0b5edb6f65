"""Equal tuning for every approach: one Optuna study per benchmark × approach, on validation concepts only.

A comparison is only fair if every row of the table had the same chance to find good settings. So
each approach gets one study with the same number of trials, the same seeded sampler (TPE) and the
same objective: the mean few-shot accuracy (%) over k = 1 and 5 on 5-way tasks over the
**validation** concepts, after training with the preset's budget, averaged over the training seeds
:data:`TUNING_SEEDS`. One seed is not enough: a study keeps the best of its trials, and one setting's
runs spread over seeds by up to 20 points on ``numbers``, so with one seed it rewards a setting that
was lucky once. ``python -m magma_teach run tuning-check`` (chapter 5) measures how far each study's
recorded value holds on the tables' seeds; ``benchmarks/README.md`` tells what the first, one-seed
studies got wrong. The objective only ever sees
:func:`without_meta_test` data, in which no example of a meta-test concept keeps its label, so
tuning *cannot* score a meta-test concept — sampling one raises.

What each approach may tune (:data:`SPACES`) is the learning rates of the loops it has: every
approach tunes its meta-test fine-tuning rate; the others add the rates of their (meta-)training
loops. The rest (sizes, the update rule chosen by the ablation) is fixed by the preset.

The chosen settings live in the package as data (``tuned.json`` beside this module), with the
command that re-derives them::

    python -m magma_teach tune numbers --trials 10 --seeds 3 --write

Studies are stored in SQLite by default (``<cache>/tuning.db``); pass an RDB URL (``storage=``, e.g.
``postgresql://…``) to share one study between machines.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.magma import MagmaConfig

TUNED_FILE = Path(__file__).with_name("tuned.json")
# Training seeds of every trial: never seeds the tables report (0, 1, 2, …), so tuning and tables draw apart.
TUNING_SEEDS = (1000, 1001, 1002)


def _log(trial, name, low, high) -> float:
    return trial.suggest_float(name, low, high, log=True)


def _finetune(trial, cfg):
    return {"finetune": replace(cfg.finetune, lr=_log(trial, "finetune_lr", 3e-4, 1e-2))}


def _align(trial, cfg):
    return {"align_inner": replace(cfg.align_inner, lr=_log(trial, "align_lr", 1e-3, 3e-2))}


def _classify(trial, cfg):
    return {"classify_inner": replace(cfg.classify_inner, lr=_log(trial, "classify_lr", 1e-3, 3e-2))}


# approach → the parts of the config its study tunes (each part suggests its own learning rate).
SPACES: dict[str, tuple[Callable, ...]] = {
    "Random init": (_finetune,),
    "Supervised learning": (_finetune,),
    "Unsup. meta-learning (reconstruct)": (_align, _finetune),
    "Align + Classify": (_align, _classify, _finetune),
    "Align + Meta Classify": (_align, _classify, _finetune),
    "MAGMA": (_align, _classify, _finetune),
    "Oracle": (_align, _finetune),
}


def suggest(trial, approach: str, cfg: MagmaConfig) -> MagmaConfig:
    """``cfg`` with the learning rates of ``approach`` suggested by an Optuna ``trial``."""
    if approach not in SPACES:
        raise ValueError(f"approach must be one of {', '.join(SPACES)}, got {approach!r}")
    changes = {}
    for part in SPACES[approach]:
        changes.update(part(trial, cfg))
    return replace(cfg, **changes)


def apply(cfg: MagmaConfig, params: dict) -> MagmaConfig:
    """``cfg`` with a study's chosen ``params`` (``{"align_lr": …, "classify_lr": …, "finetune_lr": …}``)."""
    fields = {"align_lr": "align_inner", "classify_lr": "classify_inner", "finetune_lr": "finetune"}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown tuned setting(s) {unknown}; known: {sorted(fields)}")
    return replace(cfg, **{fields[k]: replace(getattr(cfg, fields[k]), lr=float(v)) for k, v in params.items()})


def _stored(part: str, benchmark: str) -> dict:
    """``tuned.json``'s ``part`` ("settings" or "studies") of ``benchmark`` (``{}`` when never tuned)."""
    if not TUNED_FILE.exists():
        return {}
    return json.loads(TUNED_FILE.read_text())[part].get(benchmark, {})


def tuned(benchmark: str, approach: str) -> dict:
    """The stored settings of ``approach`` on ``benchmark`` (``{}`` when it was never tuned)."""
    return _stored("settings", benchmark).get(approach, {})


# ---------------------------------------------------------------- the guard
def without_meta_test(data: CrossModalDataset) -> CrossModalDataset:
    """``data`` with every meta-test example unlabeled (label -1) and its pairs removed.

    Episode samplers draw examples by label, so a task over a meta-test concept finds no example and
    fails; the fixed evaluation tasks are dropped for the same reason. This is what a study sees, and a
    study trains exactly the weights the tables train on the full data (no training reads a meta-test
    example; a -1 label never indexes the last concept: :func:`magma_teach.magma.meta_train_labels`).
    """
    test = torch.as_tensor(data.splits["meta_test"], device=data.source.labels.device)

    def hide(m: Modality) -> Modality:
        return Modality(m.kind, m.x, m.lengths, torch.where(torch.isin(m.labels, test), -1, m.labels))

    keep = ~torch.isin(data.source.labels[data.pairs[:, 0]], test) if len(data.pairs) else slice(None)
    info = {**data.info, "meta_test_hidden": True}
    return replace(data, source=hide(data.source), target=hide(data.target), pairs=data.pairs[keep],
                   eval_tasks=[], info=info)


# ---------------------------------------------------------------- studies
def objective(approach: str, data: CrossModalDataset, base: MagmaConfig, shots=(1, 5), repeats: int = 3,
              seeds=TUNING_SEEDS):
    """The study's objective: train ``approach`` with the trial's settings once per training seed of
    ``seeds``, score the validation concepts, and average over the seeds (each seed's value is kept as
    the trial's ``"per seed"`` user attribute). ``ValueError`` when ``seeds`` is empty."""
    from magma_teach.baselines import train_approach

    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one training seed")
    hidden = without_meta_test(data)

    def one_seed(cfg: MagmaConfig, seed: int) -> float:
        trained = train_approach(approach, hidden, cfg, seed=seed, progress=False)
        return validation_objective(trained.model, hidden, cfg, seed, shots, repeats)

    def score(trial) -> float:
        cfg = suggest(trial, approach, base)
        values = [one_seed(cfg, seed) for seed in seeds]
        trial.set_user_attr("per seed", values)
        return sum(values) / len(values)
    return score


def validation_objective(model, data: CrossModalDataset, cfg: MagmaConfig, seed: int, shots=(1, 5),
                         repeats: int = 3) -> float:
    """One trained model's value of the objective (%): mean accuracy over ``shots`` on 5-way tasks over the
    validation concepts (tasks and draws seeded by the training ``seed``, as in a study)."""
    from magma_teach.experiments.ablation import validation_scores

    scores = validation_scores(model, data, cfg, shots=shots, repeats=repeats, seed=seed)
    return sum(scores[f"val acc {k}-shot (%)"] for k in shots) / len(shots)


def recorded(benchmark: str) -> dict:
    """What ``tuned.json`` records of ``benchmark``'s studies: command, objective, training seeds, each
    approach's best ``"validation objective (%)"`` (``{}`` when never tuned)."""
    return _stored("studies", benchmark)


def study_name(benchmark: str, approach: str, seeds=TUNING_SEEDS) -> str:
    """``benchmark/approach``, with the training seeds when there are several: a study with another
    objective is another study, never resumed as this one."""
    seeds = tuple(int(s) for s in seeds)
    return f"{benchmark}/{approach}" if len(seeds) == 1 else f"{benchmark}/{approach}/seeds {','.join(map(str, seeds))}"


def study(benchmark: str, approach: str, storage: str | None = None, seed: int = 0, seeds=TUNING_SEEDS):
    """The Optuna study of ``approach`` on ``benchmark`` with training ``seeds`` (created or resumed), with a
    seeded TPE sampler."""
    import optuna

    return optuna.create_study(study_name=study_name(benchmark, approach, seeds), storage=storage, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)


def default_storage(cache_dir=None) -> str:
    """``sqlite:///<cache>/tuning.db`` under the package's cache folder."""
    from magma_teach.data.cache import cache_root

    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'tuning.db'}"


def run_study(benchmark: str, approach: str, data: CrossModalDataset, base: MagmaConfig, trials: int,
              storage: str | None = None, seed: int = 0, seeds=TUNING_SEEDS) -> dict:
    """Run a study until it holds ``trials`` finished trials; return its best settings and value."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = study(benchmark, approach, storage, seed, seeds)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in s.trials)
    if done < trials:
        s.optimize(objective(approach, data, base, seeds=seeds), n_trials=trials - done)
    return {"params": s.best_params, "value": s.best_value,
            "trials": sum(t.state == optuna.trial.TrialState.COMPLETE for t in s.trials)}


def write_tuned(benchmark: str, results: dict, meta: dict) -> Path:
    """Store ``{approach: {"params", "value", "trials"}}`` of ``benchmark`` in ``tuned.json`` (atomic)."""
    blob = json.loads(TUNED_FILE.read_text()) if TUNED_FILE.exists() else {"settings": {}, "studies": {}}
    blob["settings"][benchmark] = {a: r["params"] for a, r in results.items()}
    blob["studies"][benchmark] = {**meta, "validation objective (%)": {a: round(r["value"], 2) for a, r in results.items()},
                                  "trials": {a: r["trials"] for a, r in results.items()}}
    tmp = TUNED_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(blob, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(TUNED_FILE)
    return TUNED_FILE
