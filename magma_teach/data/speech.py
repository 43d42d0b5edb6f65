"""Speak a text with eSpeak NG: the synthetic voice behind both offline speech benchmarks.

``synthesize(text, voice, variant, rate, pitch)`` returns a mono float32 waveform in [-1, 1] at
22,050 Hz. eSpeak NG is a formant synthesizer: it needs no neural model and no download, runs at a
few milliseconds per short utterance on one CPU core, and gives the same samples for the same
arguments, which is what lets a dataset store only the synthesis parameters of an example
(:func:`utterance`) and still play it back exactly (:func:`render`, :func:`speak_target`).

It speaks numerals in the words of the chosen language ("42" with ``voice="fr"`` is
"quarante-deux"), and a *variant* (``"m3"``, ``"f2"``, …) changes the speaker: formants, pitch range,
roughness, breathiness. ``VARIANTS`` lists the subset the benchmarks draw from: eSpeak's plain male
and female voices. The novelty voices (``"Demonic"``, ``"UniRobot"``, …) and the Klatt voices (a
different, buzzier synthesis method) are left out; :func:`available_variants` lists them all.

How it is driven: ``ctypes`` loads the shared library, initializes it in synchronous mode (so
``espeak_Synth`` returns only after a callback has received every block of 16-bit samples), speaks,
and unloads it again. The reload on every call is deliberate: eSpeak keeps state between utterances
in static variables (a pitch-flutter phase, a gain control, a cycle counter), so the same text spoken
twice in one process gives waveforms of slightly different lengths. A fresh copy of the library has
fresh state, and the reload costs about 1 ms next to the ~3 ms of loading a voice. Its noise
generator (used by the breathy variants f2, f3, f5) is seeded from the clock at initialization, so it
is re-seeded with a constant after every load. The library file is first copied to a private
temporary folder, so that no other user of eSpeak in the same process can keep it loaded (and its
state alive) between our calls. (This relies on the platform really unloading a closed library, as
Linux does.) eSpeak's C API is also global, so a module-level lock serializes every call: threads
may call :func:`synthesize` freely but gain no speed.

Attribution: eSpeak NG (https://github.com/espeak-ng/espeak-ng) is licensed GPL-3.0-or-later. It is
not vendored here: the shared library and its voice data come from the ``espeakng-loader`` wheel and
are loaded at run time.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading

import numpy as np

from magma_teach.utils import progress

SAMPLE_RATE = 22_050  # eSpeak NG's fixed output rate; checked against espeak_Initialize's answer

# Speaker variants used by the benchmarks: eSpeak's plain male and female voices.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

# Constants of eSpeak's C API (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_EE_OK = 0
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_RATE_RANGE = (80, 450)  # words per minute, eSpeak's own limits
_PITCH_RANGE = (0, 100)

_LOCK = threading.Lock()
_private_copy: str | None = None  # path of our own copy of the library, set by _library_path()
_chunks: list[np.ndarray] = []  # filled by the callback during one espeak_Synth call

_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _collect(wav, num_samples, events):  # called by eSpeak, from inside espeak_Synth
    if wav and num_samples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0  # 0 = go on synthesizing


_CALLBACK = _CALLBACK_TYPE(_collect)  # module-level, so it outlives every library instance using it


def _paths() -> tuple[str, str]:
    """(library file, data folder) of the ``espeakng-loader`` wheel."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise RuntimeError("eSpeak NG is not available: install the 'espeakng-loader' package "
                           f"(pip install espeakng-loader); {err}") from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def _library_path() -> str:
    """Copy the library once into a private temporary folder and check it loads (call with ``_LOCK`` held)."""
    global _private_copy
    if _private_copy is None:
        lib_path, data_path = _paths()
        folder = tempfile.mkdtemp(prefix="magma_teach_espeak_")
        atexit.register(shutil.rmtree, folder, True)
        try:
            copy = shutil.copy(lib_path, os.path.join(folder, os.path.basename(lib_path)))
            lib = _open(copy, data_path)
        except (OSError, RuntimeError) as err:
            raise RuntimeError(f"eSpeak NG could not be loaded from {lib_path}: {err}") from None
        _close(lib)
        _private_copy = copy
    return _private_copy


def _open(path: str, data_path: str) -> ctypes.CDLL:
    """Load a fresh instance of the library and initialize it for synchronous output."""
    lib = ctypes.CDLL(path)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    for name in ("espeak_SetVoiceByName", "espeak_SetParameter", "espeak_Synth", "espeak_Terminate"):
        getattr(lib, name).restype = ctypes.c_int
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, os.fsencode(data_path), 0)
    if rate != SAMPLE_RATE:
        _close(lib)
        raise RuntimeError(f"initialization with data folder {data_path} returned {rate}, "
                           f"expected the sample rate {SAMPLE_RATE}")
    lib.espeak_SetSynthCallback(_CALLBACK)
    # Initialization seeds eSpeak's noise generator (used by "breathy" variants such as f2, f3, f5)
    # from the clock; a fixed seed makes those voices repeatable too.
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_ng_SetRandSeed(0)
    return lib


def _close(lib: ctypes.CDLL) -> None:
    """Free eSpeak's memory and unload the library, so the next :func:`_open` starts from clean state."""
    lib.espeak_Terminate()
    handle = lib._handle
    del lib
    import _ctypes  # dlclose (POSIX) / FreeLibrary (Windows) live in the private module only

    (getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary)(handle)


def _voice_dir(kind: str) -> str:
    return os.path.join(_paths()[1], kind)


def available_variants() -> list[str]:
    """Every variant name in eSpeak's data folder (``voices/!v``), sorted; ``VARIANTS`` is a subset."""
    return sorted(os.listdir(_voice_dir(os.path.join("voices", "!v"))))


def available_voices() -> list[str]:
    """Every language voice in eSpeak's data folder (``lang/<family>/<code>``), sorted by code."""
    voices = []
    for _, _, files in os.walk(_voice_dir("lang")):
        voices.extend(files)
    return sorted(voices)


def _check(name: str, value, low: int, high: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, (int, np.integer)) and low <= value <= high):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_text(text) -> bytes:
    """``text`` as NUL-terminated UTF-8 for eSpeak, or a ``ValueError`` saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if "\0" in text:  # eSpeak reads up to the first NUL: the rest would be dropped without a word
        raise ValueError(f"text must not contain NUL characters, got one at position {text.index(chr(0))}")
    try:
        return text.encode("utf-8") + b"\0"
    except UnicodeEncodeError as err:
        raise ValueError(f"text must be valid Unicode, got an unpaired surrogate at position {err.start}") from None


def _check_voice(voice, variant) -> None:
    if not (isinstance(voice, str) and voice.strip()):
        raise ValueError(f"voice must be an eSpeak NG voice name such as 'en' (see available_voices()), got {voice!r}")
    if variant is not None and (not isinstance(variant, str)
                                or variant not in VARIANTS and variant not in available_variants()):
        raise ValueError(f"variant must be one of eSpeak's voices/!v names (e.g. {', '.join(VARIANTS)}), "
                         f"got {variant!r}")


def synthesize(text: str, voice: str = "en", variant: str | None = None, rate: int = 175,
               pitch: int = 50) -> tuple[np.ndarray, int]:
    """Speak ``text`` and return ``(waveform, sample_rate)``: float32 array of shape (samples,) in [-1, 1].

    ``voice`` is an eSpeak language voice (``"en"``, ``"fr"``, ``"cmn"``, …; see
    :func:`available_voices`), ``variant`` an optional speaker variant (``"m3"``; see ``VARIANTS``),
    ``rate`` the speed in words per minute (80–450) and ``pitch`` the base pitch (0–100). The same
    arguments always give the same samples.

    A text with nothing to speak (empty, only whitespace, only punctuation: eSpeak answers with a
    few milliseconds of digital silence) gives an empty waveform, shape (0,); the other arguments are
    still checked. Every bad argument is a one-line ``ValueError`` naming it: a text that is not a
    ``str``, holds a NUL character or an unpaired surrogate; an unknown voice or variant; a rate or
    pitch that is not an integer in its range (a bool or 175.5 is refused, not rounded).
    """
    data = _check_text(text)
    _check("rate", rate, *_RATE_RANGE)
    _check("pitch", pitch, *_PITCH_RANGE)
    _check_voice(voice, variant)
    name = voice if variant is None else f"{voice}+{variant}"
    with _LOCK:
        lib = _open(_library_path(), _paths()[1])
        try:
            if lib.espeak_SetVoiceByName(name.encode("utf-8")) != _EE_OK:
                raise ValueError(f"voice must be an eSpeak NG voice (see available_voices()), got {voice!r}")
            # Parameters after the voice: selecting a voice resets them.
            lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
            lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
            _chunks.clear()
            status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            samples = np.concatenate(_chunks) if _chunks else np.zeros(0, dtype=np.int16)
            _chunks.clear()
        finally:
            _close(lib)
    if status != _EE_OK:
        raise RuntimeError(f"eSpeak NG failed to synthesize {text[:40]!r} (error {status})")
    if not samples.any():  # nothing was said: only the silence eSpeak appends to every utterance
        samples = samples[:0]
    return samples.astype(np.float32) / 32768.0, SAMPLE_RATE


# --- utterances: everything needed to re-create one spoken example -------------------------------

def utterance(text: str, voice: str, variant: str | None, rate: int, pitch: int, snr_db: float | None,
              noise_seed: int) -> dict:
    """The synthesis record of one example: a plain dict (safe to cache) that :func:`render` replays.

    Checked here rather than at playback, and never rounded (a rate of 175.9 is refused, not stored as
    175): the arguments of :func:`synthesize`, ``snr_db`` (``None`` or a finite number of dB) and
    ``noise_seed`` (a non-negative integer). Whether the voice exists is checked when it is spoken.
    """
    _check_text(text)
    _check("rate", rate, *_RATE_RANGE)
    _check("pitch", pitch, *_PITCH_RANGE)
    if not (isinstance(voice, str) and voice.strip()):
        raise ValueError(f"voice must be an eSpeak NG voice name such as 'en', got {voice!r}")
    if variant is not None and not isinstance(variant, str):
        raise ValueError(f"variant must be None or a variant name such as 'm3', got {variant!r}")
    if snr_db is not None and (isinstance(snr_db, (bool, np.bool_)) or not isinstance(
            snr_db, (int, float, np.integer, np.floating)) or not np.isfinite(snr_db)):
        raise ValueError(f"snr_db must be None (clean speech) or a finite number of dB, got {snr_db!r}")
    _check("noise_seed", noise_seed, 0, 2**63 - 1)
    return {"text": text, "voice": voice, "variant": variant, "rate": int(rate), "pitch": int(pitch),
            "snr_db": None if snr_db is None else float(snr_db), "noise_seed": int(noise_seed)}


def render(record: dict) -> tuple[np.ndarray, int]:
    """Speak an :func:`utterance` record and add its noise: ``(waveform (samples,) float32, sample_rate)``.

    Deterministic: the same record always gives the same samples, which is how a dataset can store
    only the record and still play back (or re-featurize) exactly the example it holds.
    """
    from magma_teach.data.audio import add_noise  # audio knows nothing of eSpeak; only this needs both

    wave, rate = synthesize(record["text"], record["voice"], record["variant"], record["rate"], record["pitch"])
    if record["snr_db"] is not None:
        wave = add_noise(wave, record["snr_db"], record["noise_seed"])
    return wave, rate


def featurize(records: list[dict], n_mels: int, max_frames: int, desc: str = "speaking"):
    """Render every record and return padded log-mel features.

    Returns ``(x, lengths)``: ``x`` (N, n_mels, max_frames) float32 log-mel (not yet standardized),
    zero past ``lengths`` (N,) int64; utterances longer than ``max_frames`` are cropped. A record
    that cannot be featurized (e.g. a text with nothing to speak) is a ``ValueError`` naming its
    index and text.
    """
    from magma_teach.data.audio import check_n_mels, log_mel, one_thread, pad_features

    check_n_mels(n_mels)  # before any synthesis, so a bad setting fails at once
    feats = []
    with one_thread():
        for i, record in enumerate(progress(records, desc)):
            wave, rate = render(record)
            try:
                feats.append(log_mel(wave, rate, n_mels, max_frames))  # skips audio that would be cropped
            except ValueError as err:
                raise ValueError(f"utterance {i} ({record['text'][:40]!r}, voice {record['voice']!r}): {err}") from None
        return pad_features(feats, max_frames)


def speak_target(dataset, index: int) -> tuple[np.ndarray, int]:
    """Re-create the waveform of spoken target example ``index`` of a speech benchmark: ``(wave, sr)``.

    Uses the synthesis record kept in ``dataset.info["utterances"]``, so the result is exactly the
    audio whose log-mel is ``dataset.target.x[index]`` (before cropping and standardizing) — e.g. for
    ``IPython.display.Audio(*speak_target(ds, 0))`` in a notebook.
    """
    records = dataset.info.get("utterances")
    if records is None:
        raise ValueError(f"dataset {dataset.name!r} has no spoken target (no info['utterances'])")
    if isinstance(index, (bool, np.bool_)) or not (isinstance(index, (int, np.integer))
                                                    and -len(records) <= index < len(records)):
        raise ValueError(f"index must be an integer in [0, {len(records) - 1}], got {index!r}")
    return render(records[int(index)])
