"""*fleurs*: a sentence as text (source) → the same sentence read aloud in its language (target).

The full-data version of the offline :mod:`~magma_teach.data.languages` benchmark, with real speech:
FLEURS (Conneau et al. 2022) reads the same ~2,000 FLoRes sentences aloud in 102 languages, 16 kHz.
The task is language identification from speech; each concept is a language:

* **source**: the utterance's normalized ``transcription``, as character ids
  (:func:`~magma_teach.data.base.char_ids`, cut after ``max_chars`` = 256 characters);
* **target**: the recording → standardized log-mel (40 bands, cropped to ``max_frames`` = 1000
  frames = the first 10 s);
* **strong pairs**: an utterance's transcription and its recording; **weak-pair clusters**: the seven
  regional groups FLEURS itself defines (``REGION``: Western Europe, Eastern Europe, Central Asia /
  Middle East / North Africa, Sub-Saharan Africa, South Asia, South-East Asia, Chinese-Japanese-Korean);
* **splits** of the languages (seeded): 2/3 meta-train, 1/9 validation, 2/9 meta-test, and
  ``n_eval_tasks`` fixed ``n_way``-way tasks over the meta-test languages (4-way by default; see below).

``per_language`` utterances are drawn per language (seeded, and per language, so adding a language
leaves the others' picks unchanged), preferring distinct sentences.

**Where the files come from.** The raw files of the Hugging Face dataset ``google/fleurs`` at the
pinned ``REVISION``: ``data/<lang>/<split>.tsv`` (no header; 7 tab-separated columns: sentence id,
file name, raw transcription, transcription, characters, number of samples, gender) and
``data/<lang>/audio/<split>.tar.gz`` (members ``<split>/<file>.wav``, often 32-bit float WAV). They
are fetched with :mod:`magma_teach.data.download`, not with the ``datasets`` library: current
``datasets`` releases no longer run FLEURS' loading script, and raw files can be checked against a
SHA-256 and served from a mirror (``MAGMA_TEACH_MIRROR``). Every file must match ``FLEURS_SHA256``;
a language whose files have no published checksum is refused until you add one with the
``extra_sha256`` setting (after checking the file yourself, e.g. ``sha256sum``). Published values
exist for the test split of 14 languages (``PINNED``: cmn_hans_cn de_de en_us es_419 fr_fr hi_in id_id
it_it ja_jp ko_kr pt_br ru_ru sv_se vi_vn) — one fewer than the 15 that 5-way meta-train/val/meta-test
splits need, so the default is ``n_way=4`` (the paper's tasks are 5-way: add ``languages`` with their
``extra_sha256`` and pass ``n_way=5``).
Disk: a test-split audio archive is 0.2–0.7 GB; it is extracted under
``<cache>/downloads/fleurs/<lang>-<split>/`` (float WAVs: about as large again), then deleted.

:func:`from_folder` builds the same kind of dataset from your own recordings, with no network.

Attribution: FLEURS, Conneau, Ma, Khanuja, Zhang, Axelrod, Dalmia, Riesa, Rivera and Bapna,
"FLEURS: Few-shot Learning Evaluation of Universal Representations of Speech", 2022
(arXiv:2205.12446); data CC BY 4.0, https://huggingface.co/datasets/google/fleurs.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from magma_teach.data.audio import (FEATURE_RATE, check_n_mels, log_mel, one_thread, pad_features, read_wav,
                                    standardize)
from magma_teach.data.base import CrossModalDataset, Modality, char_ids
from magma_teach.data.download import Remote, fetch_file, fetch_folder
from magma_teach.data.registry import STREAM_SOURCE, make_eval_tasks, split_concepts
from magma_teach.data.registry import make_config as _make_config
from magma_teach.utils import check_positive
from magma_teach.utils import progress as progress_bar

__all__ = ["BASE_URL", "DEFAULTS", "FLEURS_SHA256", "LANGUAGES", "NAMES", "PINNED", "PRESETS", "REGION", "REVISION",
           "build", "download", "from_folder", "make_config", "utterances_to_dataset"]

REVISION = "70bb2e84b976b7e960aa89f1c648e09c59f894dd"  # a commit of google/fleurs on the Hugging Face Hub
BASE_URL = "https://huggingface.co/datasets/google/fleurs/resolve/{revision}"
SAMPLE_RATE = 16_000
SPLITS = ("train", "dev", "test")  # file names; the Hub's "validation" split is the "dev" files

# SHA-256 of files at REVISION, as published by public projects that download them at that commit and
# check the hash (for archives, the Hub's LFS object id, which is the file's SHA-256). "(2)" / "(3)":
# the same value is published by that many independent projects; the others by one.
FLEURS_SHA256 = {
    # test split: transcript and audio of 14 languages
    "cmn_hans_cn/test.tsv": "5734461648f816181d7dab5fc79204b18c4b9bc2cd5138225b25c72d18385d21",  # (3)
    "cmn_hans_cn/audio/test.tar.gz": "09d19ad18f5d7e91076880807e866cd16abd924c7052b55f71cdae91714fc166",  # (2)
    "de_de/test.tsv": "82fab72c58a347345675c238f2492bb997105a4ab45d69e2a2b34ed29082fa97",  # (2)
    "de_de/audio/test.tar.gz": "e86b42dfcdef749926cd92135045f87c25966c09e50d01c401adb04ee7d8628f",  # (2)
    "en_us/test.tsv": "74c046239374deeb60fa63f258f907388093a32bcaa3140965f70ef05c79f7ca",  # (3)
    "en_us/audio/test.tar.gz": "d9c2e37b41aacd41bc283554a0a82b5476b36887049774ecb2819dcaaa55a356",  # (3)
    "es_419/test.tsv": "d107a93a4f54a18ac25cd470bb4cdadce14fb075b0c1d1542258e274d209ec09",
    "es_419/audio/test.tar.gz": "981802f6c828fd214fcf8bfc1036d80c9184b6eeb5650b3f7882f8affec046c9",
    "fr_fr/test.tsv": "5d06d338b242e00786fcf12c4c92008b9f399d5a5c872c91dca90572e7869c0d",  # (2)
    "fr_fr/audio/test.tar.gz": "d23690e102f373554d1b544cd2ff1e76e4fedeb04953c0b72751a1b7c518cfdd",  # (2)
    "hi_in/test.tsv": "889e82e2875490f9533ff59ab67326fcfa01cf828fc4412758aaaa1f442a729f",
    "hi_in/audio/test.tar.gz": "47c238b9cf7016ba596639bb3038b0c89dc6e85759f16d09c4f58c6dfa25c65f",
    "id_id/test.tsv": "824cad6367283d95f545911eec051c488c182baa13a63227c6330af3c8f80741",
    "id_id/audio/test.tar.gz": "bf7e7f608f8834012d7f79a583b6b0dd5bb82e74e2f5fb6336fc99d3af7ffcf8",
    "it_it/test.tsv": "af1a6d7295547d283441e2ea2e6f24f41d9b26098b47fe3d588930cd053c7b08",
    "it_it/audio/test.tar.gz": "97dbaedbfa52f4fa4a7b380be90b343066330b8526e1a88f5ab9f82f71f1758e",
    "ja_jp/test.tsv": "5dd9643511437414681ad3f23508596c621cdf78978724a09f1f06fefe9d300b",  # (3)
    "ja_jp/audio/test.tar.gz": "5de465fa7aaafc4e2c13aba44771550b8cd2dd29bb9b265daeb6d92ca8e0c136",  # (3)
    "ko_kr/test.tsv": "cf2f7c8765f6203e3c46ef620d5e936d3f331b6e8865455557777dd1347517f5",
    "ko_kr/audio/test.tar.gz": "3489e529f2aad18d3357b746c5f955941d258b79dc60d8a102d5bced2a223184",
    "pt_br/test.tsv": "4a7b8ae8ce07c355dcd2cf087a6486c7c3ab931d751b9a9218a9ee0cd798964b",
    "pt_br/audio/test.tar.gz": "968d1b68a90132ca1f044f664866418b0db0351a93601a671d5637016da4f49b",
    "ru_ru/test.tsv": "cd54f261220f49afbb4c128633a737eca4a22f6c0a8233d3cc891478d06676e6",  # (2)
    "ru_ru/audio/test.tar.gz": "8a0d6a0d23c3421f50c575bcf65d875cd19dadae2f7cabb415024f81b65178b1",
    "sv_se/test.tsv": "55f48c5385a6e5fb8a62ea90212c04b005e2f77d7bd8fcf20bc3a5bda223aae2",
    "sv_se/audio/test.tar.gz": "3792fd432675e16d85a67f5caf9927ad608aefc2484d738f26704f75584a5a6f",
    "vi_vn/test.tsv": "eb744c2be5f677b49c35527d428a4f647294bd0f67abd790c296e91efaaffb93",
    "vi_vn/audio/test.tar.gz": "b359261216ef14b8eea159abce794e270c2a0be903218cf1e1e8f7c7c1565b5c",
    # other splits (not enough languages for a benchmark on their own)
    "en_us/train.tsv": "3ccfc83672cc03a835143e325abb38b4163e3a21725bc1a7d1165bc309b95852",
    "en_us/dev.tsv": "9d57ee7e91e9d4c92edb39f6bbea668ef8dc2a3ff96eb510d5580b2ad05d17ec",
    "en_us/audio/train.tar.gz": "5f4491948c2bd29ac00f4b8afae2378f0a1dcdde4041b5cd284a80dff01fa9f5",
    "ja_jp/audio/dev.tar.gz": "2547f19203e1272aeba99c2235326fea525d6cfb9348bafbea2c3a7929e8e441",
    "ru_ru/train.tsv": "a18a051553daba44130d323ff8c7387dcde64ce855ade317c53209c0922885dc",
    "ru_ru/dev.tsv": "25d9dc88a7533fc0f303354a8e6d3c8186c557229c9a0024487090a11226171e",
    "ru_ru/audio/train.tar.gz": "1966e34c17d612317f03916fb45159c793947de77e1988fe76b3b53cf6c40b44",
}

# FLEURS' own regional groups (from the language table of its loading script), as weak-pair clusters.
_REGIONS = {
    "Western Europe": "ast_es bs_ba ca_es hr_hr da_dk nl_nl en_us fi_fi fr_fr gl_es de_de el_gr hu_hu "
                      "is_is ga_ie it_it kea_cv lb_lu mt_mt nb_no oc_fr pt_br es_419 sv_se cy_gb",
    "Eastern Europe": "hy_am be_by bg_bg cs_cz et_ee ka_ge lv_lv lt_lt mk_mk pl_pl ro_ro ru_ru sr_rs "
                      "sk_sk sl_si uk_ua",
    "Central Asia, Middle East, North Africa": "ar_eg az_az he_il kk_kz ky_kg mn_mn ps_af fa_ir ckb_iq "
                                               "tg_tj tr_tr uz_uz",
    "Sub-Saharan Africa": "af_za am_et ff_sn lg_ug ha_ng ig_ng kam_ke ln_cd luo_ke nso_za ny_mw om_et "
                          "sn_zw so_so sw_ke umb_ao wo_sn xh_za yo_ng zu_za",
    "South Asia": "as_in bn_in gu_in hi_in kn_in ml_in mr_in ne_np or_in pa_in sd_in ta_in te_in ur_pk",
    "South-East Asia": "my_mm ceb_ph fil_ph id_id jv_id km_kh lo_la ms_my mi_nz th_th vi_vn",
    "Chinese, Japanese, Korean": "cmn_hans_cn yue_hant_hk ja_jp ko_kr",
}
REGION = {code: region for region, codes in _REGIONS.items() for code in codes.split()}
LANGUAGES = sorted(REGION)  # the 102 FLEURS configuration names
# English names, as the loading script spells them.
NAMES = {
    "af_za": "Afrikaans", "am_et": "Amharic", "ar_eg": "Arabic", "as_in": "Assamese", "ast_es": "Asturian",
    "az_az": "Azerbaijani", "be_by": "Belarusian", "bg_bg": "Bulgarian", "bn_in": "Bengali",
    "bs_ba": "Bosnian", "ca_es": "Catalan", "ceb_ph": "Cebuano", "ckb_iq": "Sorani Kurdish",
    "cmn_hans_cn": "Mandarin Chinese", "cs_cz": "Czech", "cy_gb": "Welsh", "da_dk": "Danish",
    "de_de": "German", "el_gr": "Greek", "en_us": "English", "es_419": "Spanish", "et_ee": "Estonian",
    "fa_ir": "Persian", "ff_sn": "Fula", "fi_fi": "Finnish", "fil_ph": "Filipino", "fr_fr": "French",
    "ga_ie": "Irish", "gl_es": "Galician", "gu_in": "Gujarati", "ha_ng": "Hausa", "he_il": "Hebrew",
    "hi_in": "Hindi", "hr_hr": "Croatian", "hu_hu": "Hungarian", "hy_am": "Armenian", "id_id": "Indonesian",
    "ig_ng": "Igbo", "is_is": "Icelandic", "it_it": "Italian", "ja_jp": "Japanese", "jv_id": "Javanese",
    "ka_ge": "Georgian", "kam_ke": "Kamba", "kea_cv": "Kabuverdianu", "kk_kz": "Kazakh", "km_kh": "Khmer",
    "kn_in": "Kannada", "ko_kr": "Korean", "ky_kg": "Kyrgyz", "lb_lu": "Luxembourgish", "lg_ug": "Ganda",
    "ln_cd": "Lingala", "lo_la": "Lao", "lt_lt": "Lithuanian", "luo_ke": "Luo", "lv_lv": "Latvian",
    "mi_nz": "Maori", "mk_mk": "Macedonian", "ml_in": "Malayalam", "mn_mn": "Mongolian", "mr_in": "Marathi",
    "ms_my": "Malay", "mt_mt": "Maltese", "my_mm": "Burmese", "nb_no": "Norwegian", "ne_np": "Nepali",
    "nl_nl": "Dutch", "nso_za": "Northern Sotho", "ny_mw": "Nyanja", "oc_fr": "Occitan", "om_et": "Oromo",
    "or_in": "Oriya", "pa_in": "Punjabi", "pl_pl": "Polish", "ps_af": "Pashto", "pt_br": "Portuguese",
    "ro_ro": "Romanian", "ru_ru": "Russian", "sd_in": "Sindhi", "sk_sk": "Slovak", "sl_si": "Slovenian",
    "sn_zw": "Shona", "so_so": "Somali", "sr_rs": "Serbian", "sv_se": "Swedish", "sw_ke": "Swahili",
    "ta_in": "Tamil", "te_in": "Telugu", "tg_tj": "Tajik", "th_th": "Thai", "tr_tr": "Turkish",
    "uk_ua": "Ukrainian", "umb_ao": "Umbundu", "ur_pk": "Urdu", "uz_uz": "Uzbek", "vi_vn": "Vietnamese",
    "wo_sn": "Wolof", "xh_za": "Xhosa", "yo_ng": "Yoruba", "yue_hant_hk": "Cantonese Chinese",
    "zu_za": "Zulu",
}
_KEY = re.compile(r"^(?P<lang>[a-z0-9_]+)/(?:audio/(?P<split_a>\w+)\.tar\.gz|(?P<split_t>\w+)\.tsv)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _keys(lang: str, split: str) -> tuple[str, str]:
    """The ``FLEURS_SHA256`` keys of a language's transcript and audio archive."""
    return f"{lang}/{split}.tsv", f"{lang}/audio/{split}.tar.gz"


def pinned(split: str = "test", table: dict | None = None) -> list[str]:
    """Languages whose transcript and audio of ``split`` both have a checksum in ``table``."""
    table = FLEURS_SHA256 if table is None else table
    return [lang for lang in LANGUAGES if all(k in table for k in _keys(lang, split))]


PINNED = pinned("test")

DEFAULTS = {
    "version": 1,  # bump when building changes, so old cache files are not reused
    "revision": REVISION,
    "languages": None,  # None = every language with both files of `split` pinned (PINNED for "test")
    "split": "test",
    "per_language": 20,  # utterances per language (each in both modalities)
    "n_mels": 40, "max_frames": 1000,  # 10 s
    "max_chars": 256,
    "n_way": 4, "n_eval_tasks": 8,  # 4-way: 14 languages are pinned, 5-way splits would need 15
    "extra_sha256": {},  # {"de_de/test.tsv": "<sha256>", "de_de/audio/test.tar.gz": "<sha256>", ...}
}
PRESETS = {"quick": {"per_language": 20}, "full": {"per_language": 40}}


# --- config -----------------------------------------------------------------------------------------

def make_config(preset: str = "quick", seed: int = 0, **overrides) -> dict:
    """The full build config for ``preset`` with ``overrides``, validated (ValueError names the field)."""
    cfg = _make_config(DEFAULTS, PRESETS, preset, seed, overrides)
    if not (isinstance(cfg["revision"], str) and re.fullmatch(r"[0-9a-f]{40}", cfg["revision"])):
        raise ValueError(f"revision must be a 40-digit commit hash of google/fleurs, got {cfg['revision']!r}")
    if cfg["split"] not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} ('dev' is the Hub's validation split), "
                         f"got {cfg['split']!r}")
    cfg["extra_sha256"] = _check_extra(cfg["extra_sha256"])
    for name in ("per_language", "n_mels", "max_frames", "max_chars", "n_way", "n_eval_tasks"):
        check_positive(name, cfg[name], integer=True)
    check_n_mels(cfg["n_mels"])
    if cfg["per_language"] < 2:
        raise ValueError(f"per_language must be at least 2 (one support and one query example), "
                         f"got {cfg['per_language']}")
    cfg["languages"] = _check_languages(cfg)
    return cfg


def _check_extra(extra) -> dict:
    """Validate ``extra_sha256``: keys like ``de_de/test.tsv``, values 64 hex digits (``sha256:`` allowed)."""
    out = {}
    for key, value in _items(extra, "extra_sha256", "{'nl_nl/test.tsv': '<64 hex digits>'}"):
        match = _KEY.match(key) if isinstance(key, str) else None
        if not match or match["lang"] not in REGION:
            raise ValueError(f"extra_sha256 key {key!r} must be '<lang>/<split>.tsv' or "
                             f"'<lang>/audio/<split>.tar.gz' with a FLEURS language code")
        digest = value.lower().removeprefix("sha256:") if isinstance(value, str) else ""
        if not _HEX64.match(digest):
            raise ValueError(f"extra_sha256[{key!r}] must be a SHA-256 (64 hex digits), got {value!r}")
        out[key] = digest
    return out


def _items(value, name: str, example: str) -> list:
    """The entries of a dict setting (as pairs) or a list setting, or a ValueError naming the setting."""
    kind = dict if example.startswith("{") else (list, tuple)
    if isinstance(value, str) or not isinstance(value, kind):  # every bad setting is a ValueError here
        raise ValueError(  # noqa: TRY004
            f"{name} must be a {'dict' if kind is dict else 'list'} such as {example}, got {value!r}")
    return list(value.items()) if kind is dict else list(value)


def _check_languages(cfg: dict) -> list[str]:
    """Resolve and validate ``languages``; too few for the splits is the error of ``split_concepts``."""
    table = {**FLEURS_SHA256, **cfg["extra_sha256"]}
    langs = cfg["languages"]
    default = langs is None
    if default:
        langs = pinned(cfg["split"], table)
    _items(langs, "languages", "['fr_fr', 'sv_se']")
    unknown = [code for code in langs if code not in REGION]
    if unknown:
        raise ValueError(f"languages contains unknown FLEURS code(s) {unknown}; valid codes look like "
                         f"{LANGUAGES[:4] + ['...', 'zu_za']} (fleurs.LANGUAGES lists all 102)")
    if len(set(langs)) != len(langs):
        raise ValueError(f"languages must not repeat a code, got {langs!r}")
    try:
        split_concepts(len(langs), cfg["seed"], cfg["n_way"], field="languages")
    except ValueError as err:
        if not default:
            raise
        raise ValueError(f"{err}: only these have published checksums for split {cfg['split']!r}; pass "
                         f"n_way={len(langs) // 3}, or add languages with their extra_sha256") from None
    return sorted(langs)


# --- download ---------------------------------------------------------------------------------------

def _remotes(lang: str, cfg: dict) -> tuple[Remote, Remote]:
    """The verified transcript and audio archive of one language, or a ValueError if one is not pinned."""
    table, split = {**FLEURS_SHA256, **cfg["extra_sha256"]}, cfg["split"]
    missing = [key for key in _keys(lang, split) if key not in table]
    if missing:
        raise ValueError(f"fleurs: no pinned SHA-256 for {', '.join(missing)} at revision {cfg['revision'][:12]}; "
                         f"check the file yourself and pass extra_sha256={{{missing[0]!r}: '<sha256>'}}")
    base = BASE_URL.format(revision=cfg["revision"])
    tsv_key, tar_key = _keys(lang, split)
    return (Remote("fleurs", base, f"data/{tsv_key}", known_hash=f"sha256:{table[tsv_key]}",
                   filename=f"{lang}-{split}.tsv"),
            Remote("fleurs", base, f"data/{tar_key}", known_hash=f"sha256:{table[tar_key]}",
                   filename=f"{lang}-{split}.tar.gz"))


def download(config: dict, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Fetch (or find in the cache) the transcript and audio of every language of ``config``.

    Returns ``{lang: {"tsv": Path, "audio": Path}}`` (``audio``: the extracted folder). Every
    checksum is looked up before anything is downloaded, so a missing one fails at once.
    """
    remotes = {lang: _remotes(lang, config) for lang in config["languages"]}
    return {lang: {"tsv": fetch_file(tsv, cache_dir, progress), "audio": fetch_folder(tar, cache_dir, progress)}
            for lang, (tsv, tar) in remotes.items()}


# --- reading ----------------------------------------------------------------------------------------

def read_tsv(path: str | os.PathLike) -> list[dict]:
    """The rows of a FLEURS transcript: dicts with ``id``, ``file``, ``raw``, ``text``, ``gender``.

    ``QUOTE_NONE``: transcripts contain quote marks that are text, not CSV quoting.
    """
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line, fields in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if not fields:
                continue
            if len(fields) != 7:
                raise ValueError(f"{Path(path).name} line {line}: expected 7 tab-separated columns, "
                                 f"got {len(fields)}")
            rows.append({"id": fields[0], "file": fields[1], "raw": fields[2], "text": fields[3],
                         "gender": fields[6]})
    return rows


def _pick(rows: list[dict], count: int, gen: np.random.Generator) -> list[dict]:
    """``count`` rows in a seeded random order, distinct sentence ids first (a sentence may be read twice)."""
    order = [rows[i] for i in gen.permutation(len(rows))]
    seen, first, repeats = set(), [], []
    for row in order:
        (repeats if row["id"] in seen else first).append(row)
        seen.add(row["id"])
    return (first + repeats)[:count]


def _language_rng(seed: int, lang: str) -> np.random.Generator:
    # One stream per language (by its index among the 102), so the picks of one language do not
    # depend on which other languages are loaded.
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAM_SOURCE, LANGUAGES.index(lang)]))


def _utterances(lang: str, files: dict, cfg: dict) -> list[tuple[str, str, Path]]:
    """``per_language`` (language, transcription, wav path) of one language, from its downloads."""
    wavs = {p.name: p for p in files["audio"].rglob("*.wav")}  # the loading script matches on the name only
    rows = [r for r in read_tsv(files["tsv"]) if r["file"] in wavs]
    if len(rows) < cfg["per_language"]:
        raise ValueError(f"fleurs: {lang} {cfg['split']} has {len(rows)} utterances with audio, fewer "
                         f"than per_language={cfg['per_language']}")
    picked = _pick(rows, cfg["per_language"], _language_rng(cfg["seed"], lang))
    return [(lang, r["text"], wavs[r["file"]]) for r in picked]


# --- building ---------------------------------------------------------------------------------------

def _features(paths: list[Path], n_mels: int, max_frames: int, show: bool):
    """Log-mel of each WAV, padded: ``x`` (N, n_mels, max_frames), ``lengths`` (N,), the sample rates.

    A file that cannot be read or featurized is a one-line ``ValueError`` that names it.
    """
    feats, rates = [], []
    with one_thread():  # many small spectrograms: threads only add overhead on a shared machine
        for path in progress_bar(paths, "fleurs: log-mel", len(paths), show):
            wave, rate = read_wav(path)  # its errors name the file already
            try:
                feats.append(log_mel(wave, rate, n_mels, max_frames))
            except ValueError as err:
                raise ValueError(f"WAV {path}: {err}") from None
            rates.append(rate)
    x, lengths = pad_features(feats, max_frames)
    return x, lengths, rates


def utterances_to_dataset(name: str, utterances: list[tuple[str, str, str | os.PathLike]], *,
                          n_mels: int = 40, max_frames: int = 1000, max_chars: int = 256, n_way: int = 5,
                          n_eval_tasks: int = 8, seed: int = 0, clusters: dict[str, str] | None = None,
                          info: dict | None = None, progress: bool = False) -> CrossModalDataset:
    """Turn ``(language, text, wav path)`` triples into a text → speech dataset, one concept per language.

    Concepts are the sorted language names; examples are grouped by language, in the given order
    within one. Source: ``text`` as char ids (N, max_chars); target: standardized log-mel
    (N, n_mels, max_frames); strong pair i = (text i, recording i). ``clusters`` maps a language to
    its weak-pair group (default: each language its own). ``info`` entries are added to the dataset's.

    Raises ``ValueError`` before any audio is read for a bad setting, and for a transcript with no
    characters but whitespace (naming its recording: a text encoder cannot read an empty string).
    """
    if not utterances:
        raise ValueError(f"{name}: no utterances to build a dataset from")
    check_n_mels(n_mels)
    for field, value in (("max_frames", max_frames), ("max_chars", max_chars), ("n_way", n_way),
                         ("n_eval_tasks", n_eval_tasks)):
        check_positive(field, value, integer=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for _, text, path in utterances:
        if not (isinstance(text, str) and text.strip()):
            raise ValueError(f"{name}: the transcript of {path} is empty; every utterance needs a text")
    codes = sorted({lang for lang, _, _ in utterances})
    splits = split_concepts(len(codes), seed, n_way, field=f"{name} languages")
    items = sorted(utterances, key=lambda u: codes.index(u[0]))  # stable: keeps the order within a language
    texts = [text for _, text, _ in items]
    ids = [char_ids(t, max_chars) for t in texts]
    x, lengths, rates = _features([Path(p) for _, _, p in items], n_mels, max_frames, progress)
    x, mean, std = standardize(x, lengths)
    y = torch.tensor([codes.index(lang) for lang, _, _ in items], dtype=torch.long)
    group = clusters or {c: c for c in codes}
    cluster_names = sorted({group[c] for c in codes})
    idx = torch.arange(len(items))
    rate_counts = Counter(rates)
    meta = {"sample_rate": rate_counts.most_common(1)[0][0] if len(rate_counts) == 1 else sorted(rate_counts),
            "feature_rate": FEATURE_RATE, "n_mels": n_mels, "max_frames": max_frames,
            "audio_mean": mean, "audio_std": std, "texts": texts, "codes": list(codes),
            "files": [str(p) for _, _, p in items], "cluster_names": cluster_names}
    return CrossModalDataset(
        name=name, class_names=list(codes),
        source=Modality("text", torch.tensor([i for i, _ in ids], dtype=torch.long),
                        torch.tensor([n for _, n in ids], dtype=torch.long), y),
        target=Modality("audio", x, lengths, y.clone()),
        pairs=torch.stack([idx, idx], dim=1),
        clusters=torch.tensor([cluster_names.index(group[c]) for c in codes], dtype=torch.long),
        splits=splits, eval_tasks=make_eval_tasks(splits["meta_test"], n_eval_tasks, n_way, seed),
        info={**meta, **(info or {})})


def build(cfg: dict, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> CrossModalDataset:
    """Download (or reuse) the files of ``cfg`` and build the dataset (``registry.load`` caches it)."""
    files = download(cfg, cache_dir, progress)
    utterances = [u for lang in cfg["languages"] for u in _utterances(lang, files[lang], cfg)]
    info = {"description": "FLEURS transcription (text) -> the same sentence read aloud in its language (audio)",
            "language_names": [NAMES[c] for c in cfg["languages"]], "revision": cfg["revision"],
            "split": cfg["split"], "config": cfg,
            "attribution": "FLEURS (Conneau et al. 2022, arXiv:2205.12446), CC BY 4.0, "
                           "https://huggingface.co/datasets/google/fleurs"}
    dataset = utterances_to_dataset(
        "fleurs", utterances, n_mels=cfg["n_mels"], max_frames=cfg["max_frames"], max_chars=cfg["max_chars"],
        n_way=cfg["n_way"], n_eval_tasks=cfg["n_eval_tasks"], seed=cfg["seed"], clusters=REGION,
        info=info, progress=progress)
    # Paths into the user's cache say little once the dataset is cached: keep "<lang>/<file>".
    dataset.info["files"] = [f"{dataset.class_names[int(c)]}/{Path(p).name}"
                             for c, p in zip(dataset.target.labels, dataset.info["files"])]
    return dataset


# --- your own recordings ----------------------------------------------------------------------------

def _folder_utterances(root: Path) -> dict[str, list[tuple[str, str, Path]]]:
    """``root/<language>/<utt>.wav`` + ``<utt>.txt`` → {language: [(language, text, wav path), ...]}."""
    if not root.is_dir():
        raise ValueError(f"from_folder: {root} is not a folder (expected root/<language>/<utt>.wav + .txt)")
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        wavs = sorted(folder.glob("*.wav"))
        if not wavs:
            raise ValueError(f"from_folder: language folder {folder} holds no .wav files")
        items = []
        for wav in wavs:
            txt = wav.with_suffix(".txt")
            if not txt.is_file():
                raise FileNotFoundError(f"from_folder: {wav} has no transcript {txt.name} beside it "
                                        f"(each .wav needs a UTF-8 .txt of the same name)")
            try:
                text = txt.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError as err:
                raise ValueError(f"from_folder: {txt} is not UTF-8 text (byte {err.start})") from None
            if not text:
                raise ValueError(f"from_folder: transcript {txt} is empty (or only whitespace)")
            items.append((folder.name, text, wav))
        out[folder.name] = items
    if not out:
        raise ValueError(f"from_folder: {root} has no language folders (expected root/<language>/<utt>.wav)")
    return out


def from_folder(root: str | os.PathLike, name: str = "speech-folder", per_language: int | None = None,
                seed: int = 0, n_mels: int = 40, max_frames: int = 1000, max_chars: int = 256, n_way: int = 5,
                n_eval_tasks: int = 8, progress: bool = False) -> CrossModalDataset:
    """A text → speech dataset from your own recordings, no network; one concept per language folder.

    Layout: ``root/<language>/<utterance>.wav`` with the transcript ``root/<language>/<utterance>.txt``
    (UTF-8) beside each. Any sample rate and PCM/float WAV works (resampled to 16 kHz). With
    ``per_language`` set, that many utterances per language are drawn (seeded); ``None`` keeps all.
    At least ``3 * n_way`` language folders are needed for the meta-train/val/meta-test splits.
    Not cached: the result is built on each call.

    Every problem with a file is a one-line ``ValueError`` that names it: an empty or non-UTF-8
    transcript, an unreadable WAV, one without samples, with a sample rate outside [1000, 768000] Hz
    or with NaN samples (see :func:`~magma_teach.data.audio.read_wav`). A clip shorter than 10 ms
    gives one frame of features, padded with silence (:func:`~magma_teach.data.audio.log_mel`).
    """
    if per_language is not None:
        check_positive("per_language", per_language, integer=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    by_lang = _folder_utterances(Path(root))
    gen = np.random.default_rng(np.random.SeedSequence([int(seed), STREAM_SOURCE]))
    utterances = []
    for lang, items in by_lang.items():
        if len(items) < 2 or (per_language is not None and len(items) < per_language):
            need = max(2, per_language or 2)
            raise ValueError(f"from_folder: {lang} has {len(items)} utterance(s), needs at least {need}")
        keep = items if per_language is None else [items[i] for i in sorted(gen.choice(len(items), per_language,
                                                                                       replace=False))]
        utterances += keep
    config = {"root": str(root), "per_language": per_language, "seed": seed, "n_mels": n_mels,
              "max_frames": max_frames, "max_chars": max_chars, "n_way": n_way, "n_eval_tasks": n_eval_tasks}
    return utterances_to_dataset(
        name, utterances, n_mels=n_mels, max_frames=max_frames, max_chars=max_chars, n_way=n_way,
        n_eval_tasks=n_eval_tasks, seed=seed, progress=progress,
        info={"description": f"transcripts (text) -> recordings (audio) from {root}", "config": config})
