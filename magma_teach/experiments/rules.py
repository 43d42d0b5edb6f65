"""Meta-alignment's update rules and pairings by name, and the rule MAGMA uses by default.

An *update rule* is a set of changes to a :class:`~magma_teach.magma.MagmaConfig` that decides how
Algorithm 1's alignment loop runs (:mod:`magma_teach.reptile` explains each option); a *pairing*
decides what an alignment task holds (eq. 3 over instance pairs, or eq. 4 over groups). Chapter 6 and
``python -m magma_teach run ablation`` compare them on validation concepts;
:data:`MAGMA_UPDATE` is the rule that comparison chose, and it departs from the literal Algorithm 1:

* one task per iteration (T = 1), with a fresh minibatch of the task's concepts at every inner step;
* one inner Adam state carried from task to task (β₁ = 0, as in the authors' code);
* e_s and e_t take the adapted parameters as they are (θ ← θ̃: an outer SGD step of learning rate 1),
  so the encoders are in effect trained by sequential Adam on episodic batches — what the authors'
  code did, since its task copies shared the encoder modules with the meta-model. The classifier φ
  keeps Reptile's interpolation with ε annealed from 1 to 0.1.

The literal Algorithm 1 stays one argument away: ``update_rule(LITERAL, cfg)`` is no change at all,
and ``MagmaConfig()``'s defaults are the literal reading.
"""

from __future__ import annotations

from dataclasses import replace

from magma_teach.magma import MagmaConfig
from magma_teach.reptile import OuterUpdate

LITERAL = "literal Algorithm 1"
UPDATE_RULES = (LITERAL, "carried inner state", "outer Adam", "T = 1", "fresh batch per step",
                "authors' effective rule")
MAGMA_UPDATE = "authors' effective rule"  # chosen on validation numbers by the ablation (chapter 6)

# Pairings of numbers-like data: eq. 3 with one instance pair per number in a task, or eq. 4 with every
# image and utterance of a number positive to each other (5 numbers × 4 examples a task).
INSTANCE = {"weak": False, "align_way": 20, "pairs_per_concept": 1}
CONCEPT = {"weak": True, "groups": "concept", "align_way": 5, "pairs_per_concept": 4}


def update_rule(name: str, cfg: MagmaConfig) -> dict:
    """The changes to ``cfg`` that make update rule ``name`` (one of :data:`UPDATE_RULES`)."""
    carried = replace(cfg.align_inner, carry_state=True)
    adam = OuterUpdate("adam", lr=cfg.align_inner.lr)
    rules = {
        LITERAL: {},
        "carried inner state": {"align_inner": carried},
        "outer Adam": {"align_outer": adam, "classify_outer": adam},
        "T = 1": {"meta_batch": 1},
        "fresh batch per step": {"fresh_batches": True},
        "authors' effective rule": {"meta_batch": 1, "align_inner": carried, "fresh_batches": True,
                                    "align_outer": OuterUpdate("sgd", lr=1.0, momentum=0.0)},
    }
    if name not in rules:
        raise ValueError(f"update rule must be one of {', '.join(rules)}, got {name!r}")
    return rules[name]
