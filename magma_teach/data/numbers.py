"""*numbers*: handwritten two-digit numbers (image) → the same numbers spoken (audio).

An offline stand-in for the paper's CIFAR → ESC-50 (image → audio) benchmark. Each concept is an
integer n in ``[low, high]`` (default 10–99, so 90 classes):

* **source** (abundant, labelled): an image of n made of two real handwritten digits placed side by
  side, the tens digit left of the units digit, each an 8×8 scan from the UCI handwritten digits set;
  the 8×16 composite is upsampled ×``image_scale`` (default 2: (1, 16, 32)), shifted by up to ``max_shift``
  pixels and scaled in brightness by a random gain, with values in [0, 1];
* **target** (scarce): n spoken by eSpeak NG in ``voice`` (English by default, so "42" is heard as
  "forty-two"; ``voice="fr"`` gives "quarante-deux"), with a random speaker variant, speaking rate and
  pitch per utterance and white noise at a random SNR in ``snr_db`` → standardized log-mel
  (40 bands × up to ``max_frames`` 10 ms frames);
* **strong pairs**: image i of n with utterance i of n (same index in both modalities);
* **weak-pair clusters**: the decade (n // 10: the twenties, the thirties, …), since numbers of one
  decade share their first word and their left digit;
* **splits** of the concepts: with ``split="random"`` (default, seeded) 2/3 meta-train, 1/9 validation,
  2/9 meta-test (60/10/20 of 90); with ``split="novel_tens"`` whole decades, so that meta-test numbers
  share no tens digit (and no tens word) with meta-train or validation numbers: the last 2/9 of the
  decades are meta-test (the 80s and 90s), the decade before them validation (the 70s), the rest
  meta-train (10s–60s). A random split lets a model recognise "42" by composing "forty" and "two",
  both heard in meta-training; the novel-tens split asks for truly new concepts. Either way
  ``n_eval_tasks`` fixed 5-way tasks are drawn over the meta-test numbers.

No handwriting is seen twice across the split: the 1,797 digit scans are divided (per digit, seeded)
into two disjoint pools; images of meta-test numbers use only the second pool, those of meta-train and
validation numbers only the first. ``info["digit_samples"]`` (N, 2) records which scans every image
uses and ``info["digit_pool"]`` (1797,) which pool each scan is in, so this can be checked.

Every spoken example can be played back: ``info["utterances"][j]`` holds its text and synthesis
parameters (voice, variant, rate, pitch, SNR, noise seed), and :func:`speak_target` re-creates the exact
waveform from them.

How hard (quick preset, seed 0): a nearest-centroid classifier on per-band mean/std of the log-mel
scores 37.2% 1-shot, 48.7% 5-shot, 52.8% 10-shot on the target's 8 fixed 5-way tasks (chance 20%);
on the source's raw pixels it scores 35.5% / 46.0% / 49.6%. Twelve speakers, rates of 120–220 words
per minute and 0–15 dB of white noise keep the clean-English version from being trivially easy.
Measured with ``python benchmarks/data_speed.py`` (torch 2.14.1, CPU), which prints these figures.

Attribution: the digit scans are the UCI ML hand-written digits data set (Alpaydin & Kaynak, UCI
Machine Learning Repository, CC BY 4.0), as bundled with scikit-learn (``sklearn.datasets.load_digits``,
no download). Speech is made by eSpeak NG (GPL-3.0-or-later), loaded at run time as a shared library
from the ``espeakng-loader`` wheel, not vendored.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from magma_teach.data.audio import standardize
from magma_teach.data.base import CrossModalDataset, Modality
from magma_teach.data.registry import STREAM_POOLS, STREAM_SOURCE, STREAM_TARGET
from magma_teach.data.registry import make_config as _make_config
from magma_teach.data.registry import make_eval_tasks, range_setting, rng, split_concepts
from magma_teach.data.speech import SAMPLE_RATE, VARIANTS, featurize, speak_target, utterance
from magma_teach.utils import check_positive, check_range

__all__ = ["DEFAULTS", "PRESETS", "make_config", "build", "speak_target", "digit_images", "novel_tens_split"]

DEFAULTS = {
    "version": 2,  # bump when generation changes, so old cache files are not reused
    "low": 10, "high": 99,  # the concepts: every integer in [low, high]
    "per_concept": 20,  # examples per number, in each modality
    # English in seven accents, one drawn per utterance: with one accent a conv encoder trained from
    # scratch reached 95% at 10 shots (saturated); accents are the nuisance alignment must see past.
    "voice": ["en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us", "en-us-nyc"],
    "variants": list(VARIANTS),
    "rate": [120, 220],  # words per minute, drawn per utterance
    "pitch": [20, 80],
    "snr_db": [0.0, 15.0],  # white-noise SNR in dB, drawn per utterance; None = clean speech
    "n_mels": 40, "max_frames": 144,  # 1.44 s: the slowest (rate 120) two-digit number lasts 1.38 s
    "image_scale": 2, "max_shift": 2, "gain": [0.7, 1.0],
    "n_way": 5, "n_eval_tasks": 8,
    "split": "random",  # "random" or "novel_tens" (whole decades; see the module docstring)
}
SPLITS_BY = ("random", "novel_tens")
PRESETS = {"quick": {"per_concept": 20}, "full": {"per_concept": 40}}


def make_config(preset: str = "quick", seed: int = 0, **overrides) -> dict:
    """The full generation config for ``preset`` with ``overrides``, validated (ValueError names the field)."""
    cfg = _make_config(DEFAULTS, PRESETS, preset, seed, overrides)
    for name in ("low", "high"):
        if isinstance(cfg[name], bool) or not isinstance(cfg[name], (int, np.integer)):
            raise ValueError(f"{name} must be an integer in [10, 99], got {cfg[name]!r}")
        check_range(name, cfg[name], 10, 99)
    if cfg["high"] - cfg["low"] + 1 < 3 * cfg["n_way"]:
        raise ValueError(f"high - low + 1 (the number of concepts) must be at least {3 * cfg['n_way']} for "
                         f"{cfg['n_way']}-way meta_train/val/meta_test splits, got low={cfg['low']}, "
                         f"high={cfg['high']} ({max(0, cfg['high'] - cfg['low'] + 1)} concepts)")
    if cfg["split"] not in SPLITS_BY:
        raise ValueError(f"split must be one of {SPLITS_BY}, got {cfg['split']!r}")
    if cfg["split"] == "novel_tens" and cfg["high"] // 10 - cfg["low"] // 10 + 1 < 3:
        raise ValueError(f"split='novel_tens' needs numbers from at least 3 decades (one per split), got "
                         f"low={cfg['low']}, high={cfg['high']}")
    for name in ("per_concept", "n_mels", "max_frames", "image_scale", "n_way", "n_eval_tasks"):
        check_positive(name, cfg[name], integer=True)
    if cfg["per_concept"] < 2:
        raise ValueError("per_concept must be at least 2 (one support and one query example), "
                         f"got {cfg['per_concept']}")
    check_range("max_shift", cfg["max_shift"], 0, 4 * cfg["image_scale"])
    cfg["rate"] = range_setting("rate", cfg["rate"], 80, 450)
    cfg["pitch"] = range_setting("pitch", cfg["pitch"], 0, 100)
    cfg["gain"] = range_setting("gain", cfg["gain"], 0.05, 1.0, integer=False)
    if cfg["snr_db"] is not None:
        # Negative SNRs are refused here (not in audio.add_noise): below 0 dB the noise hides the words.
        cfg["snr_db"] = range_setting("snr_db", cfg["snr_db"], 0.0, 100.0, integer=False)
    if not cfg["variants"] or any(v not in VARIANTS for v in cfg["variants"]):
        raise ValueError(f"variants must be a non-empty list drawn from {list(VARIANTS)}, got {cfg['variants']!r}")
    cfg["variants"] = list(cfg["variants"])
    voices = [cfg["voice"]] if isinstance(cfg["voice"], str) else cfg["voice"]
    if not isinstance(voices, (list, tuple)) or not voices or not all(isinstance(v, str) and v for v in voices):
        raise ValueError(f"voice must be an eSpeak NG voice name such as 'en' or 'fr', or a non-empty list of "
                         f"them, got {cfg['voice']!r}")
    if not isinstance(cfg["voice"], str):
        cfg["voice"] = list(cfg["voice"])
    return cfg


def novel_tens_split(numbers: np.ndarray, n_way: int) -> dict[str, list[int]]:
    """Split concept ids 0..N-1 (the integers ``numbers``) by whole decades: meta-test the last 2/9 of
    the decades (at least one), validation the decade before, meta-train the rest."""
    decades = sorted(set((numbers // 10).tolist()))
    n_test = max(1, round(len(decades) * 2 / 9))
    test, val = decades[-n_test:], decades[-n_test - 1:-n_test]
    split = {"meta_train": [], "val": [], "meta_test": []}
    for concept, n in enumerate(numbers.tolist()):
        split["meta_test" if n // 10 in test else "val" if n // 10 in val else "meta_train"].append(concept)
    small = [name for name, concepts in split.items() if len(concepts) < n_way]
    if small:
        raise ValueError(f"split='novel_tens' leaves fewer than n_way={n_way} numbers in {small}; widen low..high")
    return split


# --- source: images --------------------------------------------------------------------------------

def _digit_pools(seed: int, labels: np.ndarray) -> np.ndarray:
    """Pool id (0 = meta-train/val, 1 = meta-test) of every digit scan: each digit's scans halved, seeded."""
    pool = np.zeros(len(labels), dtype=np.int64)
    gen = rng(seed, STREAM_POOLS)
    for d in range(10):
        idx = gen.permutation(np.flatnonzero(labels == d))
        pool[idx[len(idx) // 2:]] = 1
    return pool


def digit_images(numbers: np.ndarray, pools: np.ndarray, cfg: dict, gen: np.random.Generator):
    """Images of ``numbers`` (N,), each drawing its two digit scans from pool ``pools[i]``.

    Returns ``(images, digit_samples, pool_of)``: images (N, 1, 8·s, 16·s) float32 in [0, 1] with
    ``s = cfg["image_scale"]``; digit_samples (N, 2) int64, the indices of the (tens, units) scans in
    ``sklearn.datasets.load_digits()``; pool_of (1797,) int64, the pool of every scan.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    scans, labels = digits.images.astype(np.float32) / 16.0, digits.target
    pool_of = _digit_pools(cfg["seed"], labels)
    choices = {(d, p): np.flatnonzero((labels == d) & (pool_of == p)) for d in range(10) for p in (0, 1)}
    samples = np.array([[gen.choice(choices[(n // 10, p)]), gen.choice(choices[(n % 10, p)])]
                        for n, p in zip(numbers.tolist(), pools.tolist())], dtype=np.int64)
    pairs = np.concatenate([scans[samples[:, 0]], scans[samples[:, 1]]], axis=2)  # (N, 8, 16)
    s = cfg["image_scale"]
    images = F.interpolate(torch.from_numpy(pairs)[:, None], scale_factor=s, mode="bilinear",
                           align_corners=False).numpy()
    shift = cfg["max_shift"]
    out = np.zeros_like(images)
    h, w = images.shape[2:]
    for i, (dy, dx) in enumerate(gen.integers(-shift, shift + 1, size=(len(images), 2))):
        # Shift with zero fill (not wrap-around): a digit must not reappear on the other side.
        out[i, 0, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            images[i, 0, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    out *= gen.uniform(*cfg["gain"], size=(len(out), 1, 1, 1))
    return torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32)), torch.from_numpy(samples), pool_of


# --- target: speech --------------------------------------------------------------------------------

def _utterances(numbers: np.ndarray, cfg: dict, gen: np.random.Generator) -> list[dict]:
    records = []
    for n in numbers.tolist():
        snr = None if cfg["snr_db"] is None else float(gen.uniform(*cfg["snr_db"]))
        voice = cfg["voice"] if isinstance(cfg["voice"], str) else str(gen.choice(cfg["voice"]))
        records.append(utterance(str(n), voice, str(gen.choice(cfg["variants"])),
                                 int(gen.integers(cfg["rate"][0], cfg["rate"][1] + 1)),
                                 int(gen.integers(cfg["pitch"][0], cfg["pitch"][1] + 1)),
                                 snr, int(gen.integers(2**31 - 1))))
    return records


def build(cfg: dict) -> CrossModalDataset:
    """Generate the dataset for a config from :func:`make_config` (use ``registry.load`` to cache it)."""
    numbers = np.arange(cfg["low"], cfg["high"] + 1)
    n_concepts, k = len(numbers), cfg["per_concept"]
    splits = (novel_tens_split(numbers, cfg["n_way"]) if cfg["split"] == "novel_tens"
              else split_concepts(n_concepts, cfg["seed"], cfg["n_way"], field="high - low + 1"))
    labels = np.repeat(np.arange(n_concepts), k)  # example index = concept * per_concept + instance
    test = np.isin(labels, splits["meta_test"])
    images, digit_samples, pool_of = digit_images(numbers[labels], test.astype(np.int64), cfg,
                                                  rng(cfg["seed"], STREAM_SOURCE))
    records = _utterances(numbers[labels], cfg, rng(cfg["seed"], STREAM_TARGET))
    x, lengths = featurize(records, cfg["n_mels"], cfg["max_frames"], desc="numbers: speaking")
    x, mean, std = standardize(x, lengths)
    y = torch.from_numpy(labels)
    decade = numbers // 10
    idx = torch.arange(len(labels))
    info = {
        "description": "handwritten two-digit numbers (image) -> the numbers spoken by eSpeak NG (audio)",
        "sample_rate": SAMPLE_RATE, "feature_rate": 16_000, "n_mels": cfg["n_mels"],
        "audio_mean": mean, "audio_std": std, "max_frames": cfg["max_frames"],
        "texts": [r["text"] for r in records], "utterances": records,
        "digit_samples": digit_samples, "digit_pool": torch.from_numpy(pool_of),
        "cluster_names": [f"{d}0s" for d in range(decade.min(), decade.max() + 1)],
        "config": cfg,
    }
    return CrossModalDataset(
        name="numbers", class_names=[str(n) for n in numbers],
        source=Modality("image", images, torch.ones(len(labels), dtype=torch.long), y),
        target=Modality("audio", x, lengths, y.clone()),
        pairs=torch.stack([idx, idx], dim=1), clusters=torch.from_numpy(decade - decade.min()),
        splits=splits, eval_tasks=make_eval_tasks(splits["meta_test"], cfg["n_eval_tasks"], cfg["n_way"],
                                                  cfg["seed"]),
        info=info)
