"""magma_teach: learn to classify a scarce target modality by meta-aligning it to an abundant one.

A teaching re-implementation of MAGMA (Liang et al., "Cross-Modal Generalization: Learning in Low
Resource Modalities via Meta-Alignment"; called CroMA in the later poster). Read the modules in the
order data flows through them:

    data        → benchmarks (numbers, languages, concept world) and episode samplers
    encoders    → one encoder per modality into a shared space, and the shared classifier φ
    losses      → strong (eq. 3) and weak (eq. 4) contrastive alignment
    reptile     → task-batched first-order meta-updates
    magma       → Algorithm 1: meta-alignment + meta-classifier, and meta-test adaptation
    evaluate    → the few-shot protocol, retrieval metrics, label noise
"""

__version__ = "0.1.0"
__all__ = ["seed_everything", "pick_device", "check_positive", "check_range", "__version__"]


def __getattr__(name: str):
    """The helpers of :mod:`magma_teach.utils`, imported on first use (PEP 562): importing the package
    stays free of torch, so ``python -m magma_teach`` handles a Ctrl-C from its first moment."""
    if name in __all__:
        from magma_teach import utils

        return getattr(utils, name)
    raise AttributeError(f"module 'magma_teach' has no attribute '{name}'")
