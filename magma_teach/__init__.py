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

from magma_teach.utils import check_positive, check_range, pick_device, seed_everything

__version__ = "0.1.0"
__all__ = ["seed_everything", "pick_device", "check_positive", "check_range", "__version__"]
