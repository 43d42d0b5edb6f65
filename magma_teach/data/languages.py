"""*languages*: a sentence as text (source) → the same sentence spoken in its language (target).

An offline, miniature stand-in for the paper's CMU Wilderness benchmark (text → speech, language
identification from speech). Each concept is a language:

* **source**: a "sentence" of 4–12 words drawn (seeded, uniformly, without repeats) from the
  ``top_n`` most frequent words of the language in ``wordfreq``, as character ids
  (:func:`~magma_teach.data.base.char_ids`, ``max_chars`` = 96; words that would not fit are left out,
  so the text is never cut mid-word);
* **target**: exactly that sentence spoken by eSpeak NG with the language's voice, a random speaker
  variant, rate and pitch, and white noise at a random SNR → standardized log-mel (40 bands, cropped
  to ``max_frames`` = 300 frames = the first 3 s);
* **strong pairs**: sentence i and its own recording; **weak-pair clusters**: the language family
  (``FAMILY``), e.g. Romance, Balto-Slavic, Indo-Iranian — with Japanese, Korean and Chinese grouped
  as one East-Asian area, since they share no family;
* **splits** of the languages (seeded): 2/3 meta-train, 1/9 validation, 2/9 meta-test, and
  ``n_eval_tasks`` fixed 5-way tasks over the meta-test languages.

Which languages: those with both a wordfreq list and an eSpeak NG voice. wordfreq 3.1 has 42; 41 are
kept (``LANGUAGES``). Three need a mapping to eSpeak's name: ``zh`` → ``cmn`` (Mandarin), ``sh``
(Serbo-Croatian, written in Latin script) → ``hr`` (Croatian, which eSpeak also files under ``hbs``),
and ``nb`` is eSpeak's ``nb`` as it is. ``fil`` (Filipino) is dropped: eSpeak NG has no Tagalog voice.
Japanese is kept with one restriction: eSpeak's Japanese voice reads kana but announces every kanji
as "Chinese letter" (in English), so Japanese sentences use only words written wholly in kana.

``info["texts"][j]`` is the sentence spoken in target example j (and written in source example j),
``info["utterances"][j]`` its synthesis record, and :func:`speak_target` replays it.

How hard (quick preset, seed 0): a nearest-centroid classifier on per-band mean/std of the log-mel
scores 31.6% 1-shot, 42.8% 5-shot, 45.1% 10-shot on the 8 fixed 5-way tasks (chance 20%), near the
~35% / ~54% measured when the benchmark was proposed; with all twelve speaker variants (and 5–25 dB
noise) it fell to 24% / 28% / 29%, hence three male variants by default. On character
histograms of the text it scores 71.9% / 90.2% / 93.5%: scripts give many languages away, so the
source is the easy modality, as it should be. Measured with ``python benchmarks/data_speed.py``
(torch 2.14.1, CPU), which prints these figures.

Attribution: word lists from ``wordfreq`` (Robyn Speer; code Apache-2.0, word-frequency data
CC BY-SA 4.0 — derived data such as these sentences inherit that licence). Speech by eSpeak NG
(GPL-3.0-or-later), loaded at run time as a shared library from the ``espeakng-loader`` wheel, not
vendored.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from magma_teach.data.audio import standardize
from magma_teach.data.base import CrossModalDataset, Modality, char_ids
from magma_teach.data.registry import STREAM_SOURCE, STREAM_TARGET
from magma_teach.data.registry import make_config as _make_config
from magma_teach.data.registry import make_eval_tasks, range_setting, rng, split_concepts
from magma_teach.data.speech import SAMPLE_RATE, VARIANTS, featurize, speak_target, utterance
from magma_teach.utils import check_positive

__all__ = ["LANGUAGES", "FAMILY", "DEFAULTS", "PRESETS", "make_config", "build", "speak_target", "sentences"]

# wordfreq code → (English name, eSpeak NG voice, family used as the weak-pair cluster)
LANGUAGES = {
    "ar": ("Arabic", "ar", "Semitic"), "bg": ("Bulgarian", "bg", "Balto-Slavic"),
    "bn": ("Bengali", "bn", "Indo-Iranian"), "ca": ("Catalan", "ca", "Romance"),
    "cs": ("Czech", "cs", "Balto-Slavic"), "da": ("Danish", "da", "Germanic"),
    "de": ("German", "de", "Germanic"), "el": ("Greek", "el", "Hellenic"),
    "en": ("English", "en", "Germanic"), "es": ("Spanish", "es", "Romance"),
    "fa": ("Persian", "fa", "Indo-Iranian"), "fi": ("Finnish", "fi", "Uralic"),
    "fr": ("French", "fr", "Romance"), "he": ("Hebrew", "he", "Semitic"),
    "hi": ("Hindi", "hi", "Indo-Iranian"), "hu": ("Hungarian", "hu", "Uralic"),
    "id": ("Indonesian", "id", "Austronesian"), "is": ("Icelandic", "is", "Germanic"),
    "it": ("Italian", "it", "Romance"), "ja": ("Japanese", "ja", "East Asian"),
    "ko": ("Korean", "ko", "East Asian"), "lt": ("Lithuanian", "lt", "Balto-Slavic"),
    "lv": ("Latvian", "lv", "Balto-Slavic"), "mk": ("Macedonian", "mk", "Balto-Slavic"),
    "ms": ("Malay", "ms", "Austronesian"), "nb": ("Norwegian Bokmål", "nb", "Germanic"),
    "nl": ("Dutch", "nl", "Germanic"), "pl": ("Polish", "pl", "Balto-Slavic"),
    "pt": ("Portuguese", "pt", "Romance"), "ro": ("Romanian", "ro", "Romance"),
    "ru": ("Russian", "ru", "Balto-Slavic"), "sh": ("Serbo-Croatian", "hr", "Balto-Slavic"),
    "sk": ("Slovak", "sk", "Balto-Slavic"), "sl": ("Slovenian", "sl", "Balto-Slavic"),
    "sv": ("Swedish", "sv", "Germanic"), "ta": ("Tamil", "ta", "Dravidian"),
    "tr": ("Turkish", "tr", "Turkic"), "uk": ("Ukrainian", "uk", "Balto-Slavic"),
    "ur": ("Urdu", "ur", "Indo-Iranian"), "vi": ("Vietnamese", "vi", "Austroasiatic"),
    "zh": ("Chinese (Mandarin)", "cmn", "East Asian"),  # East Asian: an areal group, see the docstring
}
FAMILY = {code: family for code, (_, _, family) in LANGUAGES.items()}
_KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ff]+")  # hiragana, katakana and the long-vowel mark ー

DEFAULTS = {
    "version": 1,  # bump when generation changes, so old cache files are not reused
    "languages": None,  # None = all of LANGUAGES, else a list of wordfreq codes
    "per_language": 20,  # sentences per language (each in both modalities)
    "top_n": 2000, "words": [4, 12], "max_chars": 96,
    # Three male speakers and moderate rate/pitch spread: with all twelve variants the speaker, not the
    # language, dominates simple spectral features (nearest-centroid 1-shot fell to 24%, chance 20%).
    "variants": ["m1", "m3", "m6"],
    "rate": [150, 200], "pitch": [35, 65],
    # White noise well below the speech (20-40 dB): it fills the silent gaps with a noise floor
    # instead of log(1e-6), which otherwise makes pause length the loudest feature.
    "snr_db": [20.0, 40.0],  # drawn per utterance; None = clean speech
    "n_mels": 40, "max_frames": 300,  # 3 s
    "n_way": 5, "n_eval_tasks": 8,
}
PRESETS = {"quick": {"per_language": 20}, "full": {"per_language": 40}}


def make_config(preset: str = "quick", seed: int = 0, **overrides) -> dict:
    """The full generation config for ``preset`` with ``overrides``, validated (ValueError names the field)."""
    cfg = _make_config(DEFAULTS, PRESETS, preset, seed, overrides)
    langs = cfg["languages"]
    if langs is None:
        langs = sorted(LANGUAGES)
    if isinstance(langs, str) or not isinstance(langs, (list, tuple)):
        raise ValueError(f"languages must be a list of wordfreq codes such as ['en', 'fr'], got {langs!r}")
    unknown = [code for code in langs if code not in LANGUAGES]
    if unknown:
        raise ValueError(f"languages contains unknown code(s) {unknown}; choose from {sorted(LANGUAGES)} "
                         "(the languages with both a wordfreq list and an eSpeak NG voice)")
    if len(set(langs)) != len(langs):
        raise ValueError(f"languages must not repeat a code, got {langs!r}")
    cfg["languages"] = sorted(langs)
    for name in ("per_language", "top_n", "max_chars", "n_mels", "max_frames", "n_way", "n_eval_tasks"):
        check_positive(name, cfg[name], integer=True)
    if len(cfg["languages"]) < 3 * cfg["n_way"]:
        raise ValueError(f"languages must hold at least {3 * cfg['n_way']} codes for {cfg['n_way']}-way "
                         f"meta_train/val/meta_test splits, got {len(cfg['languages'])}")
    if cfg["per_language"] < 2:
        raise ValueError(f"per_language must be at least 2 (one support and one query example), "
                         f"got {cfg['per_language']}")
    cfg["words"] = range_setting("words", cfg["words"], 1, cfg["top_n"])
    cfg["rate"] = range_setting("rate", cfg["rate"], 80, 450)
    cfg["pitch"] = range_setting("pitch", cfg["pitch"], 0, 100)
    if cfg["snr_db"] is not None:
        # Negative SNRs are refused here (not in audio.add_noise): below 0 dB the noise hides the words.
        cfg["snr_db"] = range_setting("snr_db", cfg["snr_db"], 0.0, 100.0, integer=False)
    if not cfg["variants"] or any(v not in VARIANTS for v in cfg["variants"]):
        raise ValueError(f"variants must be a non-empty list drawn from {list(VARIANTS)}, got {cfg['variants']!r}")
    cfg["variants"] = list(cfg["variants"])
    return cfg


def _vocabulary(code: str, top_n: int) -> list[str]:
    """The ``top_n`` most frequent words of a language (Japanese: of those written only in kana)."""
    import wordfreq

    if code == "ja":
        return [w for w in wordfreq.top_n_list("ja", 5 * top_n) if _KANA.fullmatch(w)][:top_n]
    return wordfreq.top_n_list(code, top_n)


def sentences(code: str, count: int, cfg: dict, gen: np.random.Generator) -> list[str]:
    """``count`` random word sequences of language ``code``, each at most ``cfg["max_chars"]`` characters."""
    vocab = _vocabulary(code, cfg["top_n"])
    out = []
    for _ in range(count):
        n = int(gen.integers(cfg["words"][0], cfg["words"][1] + 1))
        words = [vocab[i] for i in gen.choice(len(vocab), size=min(n, len(vocab)), replace=False)]
        while len(words) > 1 and len(" ".join(words)) > cfg["max_chars"]:
            words.pop()  # drop whole words rather than cut one in half
        out.append(" ".join(words))
    return out


def build(cfg: dict) -> CrossModalDataset:
    """Generate the dataset for a config from :func:`make_config` (use ``registry.load`` to cache it)."""
    codes, k = cfg["languages"], cfg["per_language"]
    splits = split_concepts(len(codes), cfg["seed"], cfg["n_way"], field="languages")
    text_gen, speech_gen = rng(cfg["seed"], STREAM_SOURCE), rng(cfg["seed"], STREAM_TARGET)
    texts, records = [], []
    for code in codes:  # example index = language * per_language + instance
        for sentence in sentences(code, k, cfg, text_gen):
            snr = None if cfg["snr_db"] is None else float(speech_gen.uniform(*cfg["snr_db"]))
            texts.append(sentence)
            records.append(utterance(sentence, LANGUAGES[code][1], str(speech_gen.choice(cfg["variants"])),
                                     int(speech_gen.integers(cfg["rate"][0], cfg["rate"][1] + 1)),
                                     int(speech_gen.integers(cfg["pitch"][0], cfg["pitch"][1] + 1)),
                                     snr, int(speech_gen.integers(2**31 - 1))))
    ids = [char_ids(t, cfg["max_chars"]) for t in texts]
    text_x = torch.tensor([i for i, _ in ids], dtype=torch.long)
    text_len = torch.tensor([n for _, n in ids], dtype=torch.long)
    x, lengths = featurize(records, cfg["n_mels"], cfg["max_frames"], desc="languages: speaking")
    x, mean, std = standardize(x, lengths)
    y = torch.arange(len(codes)).repeat_interleave(k)
    families = sorted({FAMILY[c] for c in codes})
    idx = torch.arange(len(y))
    info = {
        "description": "word sequences (text) -> the same sentences spoken by eSpeak NG in their language (audio)",
        "sample_rate": SAMPLE_RATE, "feature_rate": 16_000, "n_mels": cfg["n_mels"],
        "audio_mean": mean, "audio_std": std, "max_frames": cfg["max_frames"],
        "texts": texts, "utterances": records, "codes": list(codes),
        "language_names": [LANGUAGES[c][0] for c in codes], "voices": [LANGUAGES[c][1] for c in codes],
        "cluster_names": families, "config": cfg,
    }
    return CrossModalDataset(
        name="languages", class_names=list(codes),
        source=Modality("text", text_x, text_len, y),
        target=Modality("audio", x, lengths, y.clone()),
        pairs=torch.stack([idx, idx], dim=1),
        clusters=torch.tensor([families.index(FAMILY[c]) for c in codes], dtype=torch.long),
        splits=splits, eval_tasks=make_eval_tasks(splits["meta_test"], cfg["n_eval_tasks"], cfg["n_way"],
                                                  cfg["seed"]),
        info=info)
