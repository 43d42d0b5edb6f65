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
``tuning-check``   tuned settings on the tables' seeds vs the studies' values   numbers        —
=================  ===========================================================  =============  ===========

Every runner takes the same arguments (:func:`run`) and one :class:`Preset` decides every size, so
``quick`` (CPU, minutes; the book and CI use it) and ``full`` (the paper's protocol, for a GPU) share
one code path. Hyperparameters were chosen by looking at the *validation* concepts only; meta-test
concepts are touched by evaluation alone.

Modules: :mod:`.presets` (sizes), :mod:`.context` (what every runner shares), one module per table or
figure (:mod:`.few_shot`, :mod:`.retrieval`, :mod:`.noisy_labels`, :mod:`.tradeoff`,
:mod:`.strong_weak`, :mod:`.ablation`, :mod:`.tuning_check`), :mod:`.results` (what a run returns and writes),
:mod:`.stored` (results kept in the package for the book, used only while the code that measured them is
installed) and :mod:`.runner` (:func:`run`).
"""

from magma_teach.experiments.context import Context, few_shot_rows
from magma_teach.experiments.presets import ALIGNMENT, FULL_DATA, PRESETS, Preset, magma_config
from magma_teach.experiments.results import ExperimentResult, paper_layout
from magma_teach.experiments.runner import EXPERIMENTS, FULL_DATA_ONLY, run

__all__ = ["ALIGNMENT", "EXPERIMENTS", "FULL_DATA", "FULL_DATA_ONLY", "PRESETS", "Context", "ExperimentResult",
           "Preset", "few_shot_rows", "magma_config", "paper_layout", "run"]
