"""Equal tuning: studies see validation concepts only, are seeded, and store what they choose."""

import pytest
import torch

from magma_teach import tuning
from magma_teach.data.conceptworld import concept_world
from magma_teach.data.episodes import sample_classification_task
from magma_teach.magma import MagmaConfig
from magma_teach.reptile import InnerLoop

optuna = pytest.importorskip("optuna", reason="tuning needs the 'tune' extra (Optuna)")


@pytest.fixture(scope="module")
def world():
    return concept_world(seed=0)


def test_without_meta_test_hides_every_meta_test_example(world):
    hidden = tuning.without_meta_test(world)
    test = torch.tensor(world.splits["meta_test"])
    for m in (hidden.source, hidden.target):
        assert not torch.isin(m.labels, test).any()
        kept = ~torch.isin(world.target.labels, test)
        assert torch.equal(m.labels[kept], world.target.labels[kept])  # the rest is untouched
    assert not torch.isin(hidden.source.labels[hidden.pairs[:, 0]], test).any()
    assert hidden.eval_tasks == []
    with pytest.raises(ValueError):  # a task over meta-test concepts cannot even be drawn
        sample_classification_task(hidden.target, world.splits["meta_test"][:5], 5, 1, 1,
                                   torch.Generator().manual_seed(0), fixed_concepts=True)


def test_a_trial_scores_validation_concepts_only(world, monkeypatch):
    """Record every concept a trial trains or evaluates on: none is a meta-test concept."""
    import magma_teach.data.episodes as episodes

    seen = set()
    original = episodes.sample_classification_task

    def spy(modality, concepts, *args, **kwargs):
        task = original(modality, concepts, *args, **kwargs)
        seen.update(task.concepts.tolist())
        return task

    for module in ("magma_teach.data.episodes", "magma_teach.magma", "magma_teach.protocol", "magma_teach.baselines"):
        monkeypatch.setattr(f"{module}.sample_classification_task", spy, raising=False)
    base = MagmaConfig(iterations=2, validate_every=2, meta_batch=2, align_inner=InnerLoop(2, 1e-3),
                       finetune=InnerLoop(2, 1e-3, betas=(0.9, 0.999)))
    score = tuning.objective("MAGMA", world, base, repeats=1)
    value = score(optuna.trial.FixedTrial({"align_lr": 3e-3, "classify_lr": 3e-3, "finetune_lr": 1e-3}))
    assert 0 <= value <= 100
    assert seen and not seen & set(world.splits["meta_test"])
    assert seen & set(world.splits["val"])


@pytest.mark.parametrize("approach", list(tuning.SPACES))
def test_every_approach_tunes_its_finetuning_rate_and_apply_inverts_suggest(approach):
    base = MagmaConfig()
    params = {"align_lr": 4e-3, "classify_lr": 5e-3, "finetune_lr": 6e-4}
    trial = optuna.trial.FixedTrial(params)
    cfg = tuning.suggest(trial, approach, base)
    assert cfg.finetune.lr == 6e-4
    assert tuning.apply(base, {k: v for k, v in trial.params.items()}) == cfg


def test_unknown_approach_and_setting_are_refused():
    with pytest.raises(ValueError, match="approach must be one of"):
        tuning.suggest(optuna.trial.FixedTrial({}), "MAML", MagmaConfig())
    with pytest.raises(ValueError, match="unknown tuned setting"):
        tuning.apply(MagmaConfig(), {"momentum": 0.9})


def test_studies_are_seeded_and_stored_in_sqlite_by_default(tmp_path):
    storage = tuning.default_storage(tmp_path)
    assert storage == f"sqlite:///{tmp_path / 'tuning.db'}"

    def toy(trial):
        return -(trial.suggest_float("x", -1, 1) - 0.3) ** 2

    picks = []
    for name in ("a", "b"):
        s = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=7))
        s.optimize(toy, n_trials=6)
        picks.append([t.params["x"] for t in s.trials])
    assert picks[0] == picks[1]
    resumed = tuning.study("a", "", storage=storage, seed=7, seeds=(1000,))  # a new name: a new study in the same file
    assert resumed.study_name == "a/" and (tmp_path / "tuning.db").exists()


def test_stored_settings_name_known_approaches_and_fields():
    import json

    if not tuning.TUNED_FILE.exists():
        pytest.skip("no tuned settings stored yet")
    blob = json.loads(tuning.TUNED_FILE.read_text())
    for benchmark, approaches in blob["settings"].items():
        assert "command" in blob["studies"][benchmark]
        for approach, params in approaches.items():
            assert approach in tuning.SPACES
            tuning.apply(MagmaConfig(), params)  # raises on an unknown field
        # The stored command re-derives the settings: it names the training seeds the studies used.
        study = tuning.recorded(benchmark)
        seeds = study["training seeds"]
        assert seeds == list(range(tuning.TUNING_SEEDS[0], tuning.TUNING_SEEDS[0] + len(seeds)))
        assert f"--seeds {len(seeds)} " in study["command"] and f"--trials {max(study['trials'].values())} " in study["command"]


def test_the_objective_is_the_mean_over_its_training_seeds(world):
    """Two seeds score the mean of each seed scored alone, and the trial keeps both values."""
    base = MagmaConfig(iterations=2, validate_every=2, meta_batch=2, align_inner=InnerLoop(2, 1e-3),
                       finetune=InnerLoop(2, 1e-3, betas=(0.9, 0.999)))
    params = {"align_lr": 3e-3, "classify_lr": 3e-3, "finetune_lr": 1e-3}
    alone = [tuning.objective("MAGMA", world, base, repeats=1, seeds=(s,))(optuna.trial.FixedTrial(params))
             for s in (1000, 1001)]
    trial = optuna.trial.FixedTrial(params)
    both = tuning.objective("MAGMA", world, base, repeats=1, seeds=(1000, 1001))(trial)
    assert alone[0] != alone[1]  # the seeds differ, so the mean is not one of them
    assert both == pytest.approx(sum(alone) / 2, abs=1e-9)
    assert trial.user_attrs["per seed"] == pytest.approx(alone, abs=1e-9)
    assert tuning.TUNING_SEEDS == (1000, 1001, 1002) and not set(tuning.TUNING_SEEDS) & set(range(10))
    with pytest.raises(ValueError, match="at least one training seed"):
        tuning.objective("MAGMA", world, base, seeds=())


def test_a_study_with_other_training_seeds_is_another_study():
    assert tuning.study_name("numbers", "MAGMA", (1000,)) == "numbers/MAGMA"  # the one-seed studies kept their name
    assert tuning.study_name("numbers", "MAGMA") == "numbers/MAGMA/seeds 1000,1001,1002"
    assert tuning.study_name("numbers", "MAGMA", (1000, 1001)) != tuning.study_name("numbers", "MAGMA")


@pytest.mark.parametrize("option", ["--trials", "--seeds"])
def test_tune_refuses_a_count_below_one_in_one_line(option, capsys):
    from magma_teach import cli

    assert cli.main(["tune", "numbers", option, "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f" tune: error: {option} must be a positive integer, got 0") and "\n" not in err


def test_hidden_meta_test_examples_never_stand_for_the_last_concept():
    """A hidden example's label is -1; a lookup table indexed by it must not wrap to the last concept."""
    from magma_teach.magma import meta_train_labels

    # A split whose last concept is a meta-train one: there a wrapped -1 read as a meta-train label.
    world = next(w for w in (concept_world(seed=s) for s in range(10)) if w.num_classes - 1 in w.splits["meta_train"])
    hidden = tuning.without_meta_test(world)
    label_of = meta_train_labels(hidden)
    assert label_of[-1] == -1 and len(label_of) == world.num_classes + 1
    assert torch.equal(label_of[hidden.source.labels] >= 0, meta_train_labels(world)[world.source.labels] >= 0)


@pytest.mark.parametrize("approach", ["MAGMA", "Align + Classify", "Align + Meta Classify"])
def test_a_trial_trains_exactly_what_the_tables_train(approach):
    """Hiding meta-test labels changes nothing a training run reads: the weights equal those trained on the
    full data (numbers, tiny preset, whose last number is a meta-train one)."""
    from magma_teach.baselines import train_approach
    from magma_teach.experiments import PRESETS, Context, magma_config

    ctx = Context(PRESETS["tiny"], torch.device("cpu"), 0, progress=False)
    data = ctx.benchmark("numbers")
    assert data.num_classes - 1 in data.splits["meta_train"]
    cfg = magma_config(ctx.preset, data, approach=approach)
    full = train_approach(approach, data, cfg, seed=3, progress=False).model.state_dict()
    hidden = train_approach(approach, tuning.without_meta_test(data), cfg, seed=3, progress=False).model.state_dict()
    assert all(torch.equal(full[k], hidden[k]) for k in full)
