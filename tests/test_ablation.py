"""The meta-alignment ablation: its variants, their equal budget, the selection rule, and MAGMA's default."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from magma_teach.data.registry import load
from magma_teach.experiments import ALIGNMENT, PRESETS, magma_config
from magma_teach.experiments.ablation import REFERENCES, equal_budget, rules, selection, variants
from magma_teach.experiments.context import Context
from magma_teach.experiments.rules import CONCEPT, INSTANCE, LITERAL, MAGMA_UPDATE, UPDATE_RULES, update_rule
from magma_teach.magma import MagmaConfig
from magma_teach.reptile import OuterUpdate

BASE = MagmaConfig(meta_batch=8)


def test_each_single_change_differs_from_the_literal_rule_in_its_own_fields_only():
    literal = replace(BASE, **rules(BASE)[LITERAL])
    expected = {"carried inner state": {"align_inner"}, "outer Adam": {"align_outer", "classify_outer"},
                "T = 1": {"meta_batch"}, "fresh batch per step": {"fresh_batches"},
                "authors' effective rule": {"meta_batch", "align_inner", "fresh_batches", "align_outer"}}
    for name, fields in expected.items():
        cfg = variants(BASE)[name]
        changed = {f for f in MagmaConfig.__dataclass_fields__ if getattr(cfg, f) != getattr(literal, f)}
        assert changed == fields, name
    assert variants(BASE)["carried inner state"].align_inner.carry_state
    assert variants(BASE)["authors' effective rule"].align_outer == OuterUpdate("sgd", lr=1.0, momentum=0.0)
    assert set(UPDATE_RULES) <= set(rules(BASE)) and not set(REFERENCES) & set(rules(BASE))


def test_the_outer_sgd_step_of_lr_one_takes_the_adapted_parameters():
    from magma_teach.reptile import InnerLoop, Reptile

    theta = {"w": torch.zeros(2)}
    reptile = Reptile(theta, InnerLoop(3, 0.1, "sgd"), OuterUpdate("sgd", lr=1.0, momentum=0.0))
    adapted = reptile.adapt(lambda p, t: ((p["w"] - t) ** 2).sum(), torch.tensor([[1.0, -1.0]]))
    reptile.update(adapted, epsilon=0.1)  # ε is not used: θ ← θ̃
    assert torch.allclose(theta["w"], adapted["w"][0])


def test_magma_default_on_numbers_is_the_ablations_concept_groups_with_the_authors_rule():
    data = load("numbers", preset="quick", seed=0)
    base = magma_config(PRESETS["quick"], data)
    magma = magma_config(PRESETS["quick"], data, approach="MAGMA")
    assert MAGMA_UPDATE == "authors' effective rule"
    assert ALIGNMENT["numbers"] == CONCEPT
    chosen = replace(base, **rules(base)["concept groups, authors' rule"])
    lrs = {"align_inner": magma.align_inner, "classify_inner": magma.classify_inner, "finetune": magma.finetune}
    budget = {"iterations": magma.iterations, "validate_every": magma.validate_every}
    assert replace(chosen, **lrs, **budget) == magma
    # every cross-modal approach aligns with the same pairing
    for approach in ("Align + Classify", "Align + Meta Classify"):
        cfg = magma_config(PRESETS["quick"], data, approach=approach)
        assert (cfg.weak, cfg.groups, cfg.align_way, cfg.pairs_per_concept) == (True, "concept", 5, 4)


@pytest.mark.parametrize("meta_batch", [1, 2, 8])
def test_equal_budget_gives_every_rule_the_same_inner_steps_and_validations(meta_batch):
    cfg = equal_budget(replace(BASE, meta_batch=meta_batch), steps=2000, validations=4)
    assert cfg.iterations * cfg.meta_batch * cfg.align_inner.steps == 2000
    assert cfg.iterations // cfg.validate_every == 4


@pytest.mark.parametrize("name", ["tiny", "quick", "full"])
def test_the_tables_give_every_approach_one_budget_and_the_ablation_screens_within_it(name):
    data = load("numbers", preset="quick", seed=0)
    preset = PRESETS[name]
    table_budget = preset.iterations * preset.meta_batch * preset.inner_steps
    for approach in ("MAGMA", "Align + Meta Classify", "Oracle"):
        cfg = magma_config(preset, data, approach=approach)
        assert cfg.iterations * cfg.meta_batch * cfg.align_inner.steps == table_budget
        assert cfg.iterations // cfg.validate_every == preset.iterations // preset.validate_every
    assert preset.ablation_steps <= table_budget
    if name != "full":  # quick and tiny: the ablation picks MAGMA's rule at the budget the tables train with
        assert preset.ablation_steps == table_budget


def test_selection_averages_shots_and_splits_per_seed_and_calls_ties():
    rows = []
    for variant, level in ((LITERAL, 70), ("concept groups (eq. 4)", 90), (REFERENCES[1], 91)):
        for split in ("random", "novel_tens"):
            for seed in (0, 1, 2):
                rows.append({"split": split, "variant": variant, "seed": seed,
                             "val acc 1-shot (%)": level + seed, "val acc 5-shot (%)": level + 5})
    table = selection(pd.DataFrame(rows)).set_index("variant")
    assert table.loc["concept groups (eq. 4)", "mean"] == pytest.approx(93.0)  # (91 + 95) / 2 on average
    assert table.loc["concept groups (eq. 4)", "chosen"] and not table.loc[REFERENCES[1], "chosen"]
    assert table.loc[REFERENCES[1], "verdict vs chosen"] == "ahead"  # a reference may lead the chosen rule
    assert table.loc[LITERAL, "verdict vs chosen"] == "behind"
    assert table.loc["concept groups (eq. 4)", "verdict vs chosen"] == "chosen"  # not a tie with itself


def test_the_ablation_refuses_a_split_setting_and_checks_the_rest(tmp_path):
    from magma_teach.experiments.ablation import check_settings

    ctx = Context(PRESETS["tiny"], torch.device("cpu"), 0, data_settings={"split": "random"})
    with pytest.raises(ValueError, match="both splits"):
        check_settings(ctx)
    with pytest.raises(ValueError, match="unknown setting"):
        check_settings(Context(PRESETS["tiny"], torch.device("cpu"), 0, data_settings={"nosuchkey": 1}))


@pytest.mark.parametrize("name", ["tiny", "quick", "full"])
def test_every_preset_screens_the_issues_variants_the_chosen_rule_and_both_references(name):
    from magma_teach.experiments.ablation import CONFIRMING

    screened = set(rules(BASE, PRESETS[name].ablation_confirming))
    required = {*UPDATE_RULES, "concept groups (eq. 4)", "concept groups, authors' rule"}
    assert required <= screened  # each single change, concept groups, and the chosen combination
    assert (CONFIRMING in screened) == (name != "quick")  # quick leaves the second combination to full
    assert len(set(REFERENCES)) == 2 and not set(REFERENCES) & screened


def test_update_rule_names_are_checked():
    with pytest.raises(ValueError, match="update rule must be one of"):
        update_rule("MAML", BASE)
    assert update_rule(LITERAL, BASE) == {} and INSTANCE["weak"] is False


@pytest.mark.parametrize("preset", ["tiny", "quick"])
def test_languages_width_changes_only_the_step_width_and_keeps_each_rules_examples(preset):
    from magma_teach.experiments.ablation import _widths, alignment_shape

    data = load("languages", preset=PRESETS[preset].data, seed=0, **PRESETS[preset].data_overrides.get("languages", {}))
    n_train = len(data.splits["meta_train"])
    for approach in ("MAGMA", "Align + Meta Classify"):
        table4 = magma_config(PRESETS[preset], data, approach=approach)
        before = alignment_shape(table4, approach, n_train)
        narrow, wide = _widths(table4, approach, n_train)
        widths = [alignment_shape(c, approach, n_train)["languages a step"] for c in (narrow, wide)]
        assert widths == [5, n_train]
        for cfg in (narrow, wide):
            shape = alignment_shape(cfg, approach, n_train)
            examples = shape["languages a step"] * shape["alignment steps"]
            # the same alignment examples as Table 4, to the rounding of one iteration
            per_iteration = examples / cfg.iterations
            assert abs(examples - before["languages a step"] * before["alignment steps"]) <= per_iteration / 2
            # nothing else moves: rates, pairing, update rule
            assert (cfg.align_inner, cfg.align_outer, cfg.weak, cfg.groups, cfg.finetune) == \
                (table4.align_inner, table4.align_outer, table4.weak, table4.groups, table4.finetune)
    # plain alignment's wide cell is Table 4's run itself (its batch already holds every meta-train language)
    amc = magma_config(PRESETS[preset], data, approach="Align + Meta Classify")
    if min(amc.align_way * amc.meta_batch, n_train) == n_train:
        wide = _widths(amc, "Align + Meta Classify", n_train)[1]
        assert (wide.iterations, wide.meta_batch) == (amc.iterations, amc.meta_batch)
