"""From a waveform to what an audio encoder reads: noise, log-mel spectrogram, padding.

The features follow the usual speech front end: resample to 16 kHz, a 25 ms Hann window every 10 ms
(so 100 frames per second), ``n_mels`` mel bands, and the natural log of the mel power plus 1e-6
(the small constant keeps silence finite: log(1e-6) ≈ -13.8). :func:`pad_features` then stacks
spectrograms of different lengths into one (N, n_mels, max_frames) tensor, zero past each length,
which is the audio :class:`~magma_teach.data.base.Modality` layout.

:func:`add_noise` mixes white noise in at a chosen signal-to-noise ratio. Here any ``snr_db`` in
[-300, 300] dB is allowed: a negative value (noise louder than the speech) is a legitimate listening
condition. The
benchmarks built on top are stricter and reject a negative SNR, because below 0 dB white noise
drowns eSpeak's quiet consonants and the task stops being about what is said.

What is refused, and what is repaired (every refusal is a one-line ``ValueError`` naming the argument):

* ``sample_rate``: a whole number of Hz in [``MIN_RATE``, ``MAX_RATE``] = [1,000, 768,000]. A bool,
  NaN, zero, negative or fractional rate (22,050.9 Hz) is refused rather than rounded: a wrong rate
  shifts every frequency. ``22050.0`` is accepted. A rate whose ratio to 16 kHz does not reduce to
  small integers (44,099 Hz, 11,127 Hz) is resampled with SciPy's polyphase filter instead of
  torchaudio's, whose sinc kernel for such a ratio needs gigabytes (``_TORCHAUDIO_KERNEL_LIMIT``).
* ``waveform``: a 1-D array of finite floating-point samples with at least one sample. A 2-D
  (multi-channel) array, integer PCM (scale it first; :func:`read_wav` does), NaN or inf is refused.
* a clip of at most half an analysis window (200 samples at 16 kHz, 12.5 ms) cannot be
  reflect-padded by torch; it is followed by silence (to 401 samples, so that every frame it keeps
  sees silence, not a reflection, past its end) and gives the usual ``1 + samples // 160`` frames:
  one frame for anything under 10 ms.
* ``n_mels``: an integer in [1, ``MAX_MELS``] = [1, 89]: with a 400-point FFT at 16 kHz, 90 or more
  bands leave some mel filter without a single FFT bin, a band that is always log(1e-6).

Errors about audio that came from a file name the file (:func:`read_wav`, and the FLEURS and
ESC-50 loaders); errors about a synthesized utterance name its text (``speech.featurize``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import numpy as np
import torch
import torchaudio

from magma_teach.utils import check_positive

FEATURE_RATE = 16_000  # Hz: every waveform is resampled to this before the mel filterbank
WINDOW_MS, HOP_MS = 25, 10
N_FFT = FEATURE_RATE * WINDOW_MS // 1000  # 400 samples
HOP = FEATURE_RATE * HOP_MS // 1000  # 160 samples
LOG_FLOOR = 1e-6
MIN_RATE, MAX_RATE = 1_000, 768_000  # Hz; 768 kHz is the highest rate audio hardware records
MAX_SNR_DB = 300  # dB: far beyond float32's ~150 dB of dynamic range either way
MAX_MELS = 89  # the most mel bands for which every filter covers at least one of the 201 FFT bins
# torchaudio's resampling kernel has about (16000 / g) * (rate / g) entries (g = gcd); above this
# many (16 MiB of float32) the polyphase filter of SciPy is used instead. Every common rate
# (8, 11.025, 22.05, 32, 44.1, 48, 96 kHz, ...) stays far below it.
_TORCHAUDIO_KERNEL_LIMIT = 1 << 22


def check_sample_rate(sample_rate, name: str = "sample_rate") -> int:
    """``sample_rate`` as an int, or a ``ValueError``: it must be a whole number of Hz in [1000, 768000]."""
    ok = (not isinstance(sample_rate, (bool, np.bool_))
          and isinstance(sample_rate, (int, np.integer, float, np.floating))
          and math.isfinite(sample_rate) and float(sample_rate).is_integer()
          and MIN_RATE <= sample_rate <= MAX_RATE)
    if not ok:
        raise ValueError(f"{name} must be a whole number of Hz in [{MIN_RATE}, {MAX_RATE}], got {sample_rate!r}")
    return int(sample_rate)


def check_n_mels(n_mels, name: str = "n_mels") -> int:
    """``n_mels`` as an int, or a ``ValueError``: it must be an integer in [1, ``MAX_MELS``]."""
    if isinstance(n_mels, (bool, np.bool_)) or not isinstance(n_mels, (int, np.integer)) \
            or not 1 <= n_mels <= MAX_MELS:
        raise ValueError(f"{name} must be an integer in [1, {MAX_MELS}] (more bands than that leave mel "
                         f"filters without any of the {N_FFT // 2 + 1} FFT bins), got {n_mels!r}")
    return int(n_mels)


def check_waveform(waveform, name: str = "waveform", allow_empty: bool = False) -> np.ndarray:
    """``waveform`` as a float32 array (samples,), or a one-line ``ValueError`` saying what is wrong.

    Allowed: a 1-D array, list or tensor of finite floating-point samples (not integer PCM, which
    needs scaling first), non-empty unless ``allow_empty``.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    try:
        array = np.asarray(waveform)
    except (ValueError, TypeError):
        array = np.asarray(None)  # ragged lists and the like: refused below
    if array.dtype.kind != "f":
        hint = " (scale integer PCM to [-1, 1] first, as read_wav does)" if array.dtype.kind in "iu" else ""
        raise ValueError(f"{name} must hold floating-point samples, got dtype {array.dtype}{hint}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (samples,), got shape {array.shape}; average the channels first")
    if not (allow_empty or array.size):
        raise ValueError(f"{name} must hold at least one sample, got an empty array")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} must hold finite samples, got {bad.size} NaN/infinite one(s), "
                         f"the first at index {bad[0]}")
    array = array.astype(np.float32, copy=False)
    return array if array.flags.writeable else array.copy()  # torch.from_numpy warns on read-only memory


@functools.lru_cache(maxsize=None)
def _resampler(orig_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_rate, FEATURE_RATE)


def _to_feature_rate(wave: np.ndarray, rate: int) -> torch.Tensor:
    """Resample (samples,) at ``rate`` to 16 kHz: torchaudio's sinc resampler, or SciPy's polyphase
    filter for a rate whose reduced ratio to 16 kHz would make torchaudio's kernel huge."""
    if rate == FEATURE_RATE:
        return torch.from_numpy(wave)
    g = math.gcd(rate, FEATURE_RATE)
    up, down = FEATURE_RATE // g, rate // g
    if up * down <= _TORCHAUDIO_KERNEL_LIMIT:
        return _resampler(rate)(torch.from_numpy(wave))
    from scipy.signal import resample_poly

    return torch.from_numpy(resample_poly(wave, up, down).astype(np.float32))


@functools.lru_cache(maxsize=None)
def _mel(n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=FEATURE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, n_mels=n_mels, power=2.0)


_ONE_THREAD_LOCK = threading.Lock()
_one_thread_state = {"users": 0, "before": 1}  # blocks inside one_thread, and the count to restore


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block, then restore the previous setting.

    A spectrogram of one utterance is a few thousand numbers: splitting such small operations over
    threads only adds hand-over cost, and on a busy 2-core machine it made log-mel ~100x slower
    (70 ms instead of 0.7 ms per utterance). Loops over many small waveforms run inside this.

    torch's thread count is one setting for the whole process, so blocks that overlap (nested, or in
    several Python threads) share it: the first to enter saves the count, the last to leave restores
    it. (Saving and restoring per block would let two threads that interleave leave torch on one
    thread for good.)
    """
    with _ONE_THREAD_LOCK:
        if _one_thread_state["users"] == 0:
            _one_thread_state["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _one_thread_state["users"] += 1
    try:
        yield
    finally:
        with _ONE_THREAD_LOCK:
            _one_thread_state["users"] -= 1
            if _one_thread_state["users"] == 0:
                torch.set_num_threads(_one_thread_state["before"])


def log_mel(waveform, sample_rate: int, n_mels: int = 40, max_frames: int | None = None) -> torch.Tensor:
    """Log-mel spectrogram of a mono waveform (samples,) → float32 tensor (n_mels, frames).

    ``frames`` is ``1 + samples_at_16kHz // 160``: 100 frames per second of audio, and at least one.
    A clip of at most 200 samples at 16 kHz (torch's reflect padding of the first window needs more)
    is followed by silence up to 401 samples, and its own frames are kept: the result equals that of
    the clip with silence appended, cut to the clip's frame count. With
    ``max_frames`` only the start of a long recording is transformed, plus 0.1 s: resampling and
    windows reach past a frame's own 10 ms, and the margin keeps the first ``max_frames`` frames equal
    to those of the whole recording. :func:`pad_features` then crops to ``max_frames``.

    Raises ``ValueError`` for a ``sample_rate`` that is not a whole number of Hz in [1000, 768000],
    ``n_mels`` outside [1, 89], ``max_frames`` not a positive integer, and a waveform that is not a
    non-empty 1-D array of finite floats (see the module docstring).
    """
    rate = check_sample_rate(sample_rate)
    n_mels = check_n_mels(n_mels)
    if max_frames is not None:
        check_positive("max_frames", max_frames, integer=True)
    wave = check_waveform(waveform)
    if max_frames is not None:
        wave = wave[: int(rate * (max_frames * HOP_MS / 1000 + 0.1))]
    with torch.no_grad():
        wave = _to_feature_rate(wave, rate)
        n = len(wave)
        if n <= N_FFT // 2:  # reflect padding needs more samples than it pads (200)
            wave = torch.nn.functional.pad(wave, (0, N_FFT + 1 - n))  # silence under every kept window
        return torch.log(_mel(n_mels)(wave) + LOG_FLOOR)[:, : 1 + n // HOP]


def add_noise(waveform, snr_db: float, generator: np.random.Generator | int) -> np.ndarray:
    """Return ``waveform + white noise`` with the given signal-to-noise ratio in dB, as float32 (samples,).

    The noise power is the mean signal power divided by ``10 ** (snr_db / 10)``; ``generator`` (a NumPy
    generator or an integer seed) draws it, so the same seed gives the same noisy waveform. Any
    ``snr_db`` in [-300, 300] dB is accepted (negative = noise louder than the signal; beyond ±300 dB
    the noise is below float32 resolution or its scale overflows). A silent (or empty) waveform is
    returned unchanged, since its SNR is undefined. The result is not clipped. ``waveform`` must be a
    1-D array of finite floats (see :func:`check_waveform`).
    """
    if isinstance(snr_db, (bool, np.bool_)) or not (isinstance(snr_db, (int, float, np.integer, np.floating))
                                                     and -MAX_SNR_DB <= snr_db <= MAX_SNR_DB):
        raise ValueError(f"snr_db must be a number of decibels in [{-MAX_SNR_DB}, {MAX_SNR_DB}], got {snr_db!r}")
    if not isinstance(generator, np.random.Generator) and (
            isinstance(generator, (bool, np.bool_)) or not isinstance(generator, (int, np.integer)) or generator < 0):
        raise ValueError(f"generator must be a numpy Generator or a non-negative integer seed, got {generator!r}")
    wave = check_waveform(waveform, allow_empty=True)
    power = float(np.mean(wave.astype(np.float64) ** 2)) if wave.size else 0.0
    if power == 0.0:
        return wave.copy()
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    scale = math.sqrt(power / 10 ** (snr_db / 10))
    return (wave + scale * rng.standard_normal(wave.shape)).astype(np.float32)


def pad_features(features: list[torch.Tensor], max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack spectrograms (n_mels, frames_i) into ``x`` (N, n_mels, max_frames) and ``lengths`` (N,).

    Longer spectrograms are cropped to their first ``max_frames`` frames; shorter ones are padded
    with 0 and their ``lengths`` entry says how many frames are real. Every spectrogram must be a
    tensor of finite values with the same number of bands and at least one frame (``ValueError``
    naming its index otherwise).
    """
    check_positive("max_frames", max_frames, integer=True)
    if len(features) == 0:
        raise ValueError("features must hold at least one spectrogram")
    n_mels = features[0].shape[0] if isinstance(features[0], torch.Tensor) and features[0].dim() else 0
    x = torch.zeros(len(features), n_mels, max_frames)
    lengths = torch.zeros(len(features), dtype=torch.long)
    for i, feat in enumerate(features):
        if not isinstance(feat, torch.Tensor) or feat.dim() != 2 or feat.shape[0] != n_mels or feat.shape[1] == 0:
            shape = tuple(feat.shape) if hasattr(feat, "shape") else type(feat).__name__
            raise ValueError(f"features[{i}] must be a tensor of shape ({n_mels}, frames >= 1), got {shape}")
        if not torch.isfinite(feat).all():
            raise ValueError(f"features[{i}] must hold finite values, got NaN or inf")
        n = min(feat.shape[1], max_frames)
        x[i, :, :n] = feat[:, :n]
        lengths[i] = n
    return x, lengths


def standardize(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Shift and scale padded spectrograms (N, n_mels, frames) to mean 0, std 1 over their real frames.

    Returns ``(x_standardized, mean, std)``; padding stays 0 (now the average value rather than a
    loud log(1) = 0), so an encoder that forgot the mask would at least see neutral values. Apply the
    same ``(feat - mean) / std`` to a new spectrogram to compare it with the stored ones.

    ``lengths`` (N,) must lie in [0, frames], with at least two real frames in all. Features that do
    not vary at all (std 0, e.g. every clip silent) cannot be standardized: ``ValueError``.
    """
    if x.dim() != 3 or lengths.shape != (len(x),):
        raise ValueError(f"x must be (N, n_mels, frames) with lengths (N,), got {tuple(x.shape)} and "
                         f"{tuple(lengths.shape)}")
    if len(lengths) and not (0 <= int(lengths.min()) and int(lengths.max()) <= x.shape[-1]):
        raise ValueError(f"lengths must lie in [0, {x.shape[-1]}] (the number of frames), "
                         f"got values in [{int(lengths.min())}, {int(lengths.max())}]")
    if int(lengths.sum()) < 2:
        raise ValueError(f"lengths must leave at least 2 real frames to standardize over, got {int(lengths.sum())}")
    mask = torch.arange(x.shape[-1]) < lengths[:, None]  # (N, frames)
    # float64 sums: a float32 sum over ~10^6 values depends on how threads split it, and the same
    # seed must give the same bits.
    real = x.transpose(1, 2)[mask].double()  # (total real frames, n_mels)
    mean, std = real.mean().item(), real.std().item()
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"x must vary over its real frames to be standardized, got std {std} "
                         f"(every value is {mean:.4g}: silent or constant audio?)")
    out = (x - mean) / std
    return out * mask[:, None, :], mean, std


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV file as mono float32 samples in [-1, 1] (samples,) and its sample rate.

    Handles 8/16/24/32-bit PCM (ESC-50: 16-bit) and 32/64-bit float (FLEURS ships float32), via ``scipy.io.wavfile``
    (the ``wave`` module cannot read float WAVs); several channels are averaged. Every problem is a
    one-line ``ValueError`` that names the file: unreadable, no samples, a sample rate outside
    [1000, 768000] Hz, or NaN/infinite samples in a float WAV.
    """
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except Exception as err:  # noqa: BLE001 - any parser failure (ZeroDivisionError on 0 channels, ...) is one answer
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"cannot read WAV {path}: {detail}") from None
    if data.size == 0:
        raise ValueError(f"WAV {path} holds no samples")
    try:
        rate = check_sample_rate(rate, "its sample rate")
    except ValueError as err:
        raise ValueError(f"WAV {path}: {err}") from None
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        wave = (data.astype(np.float32) - 128) / 128
    elif np.issubdtype(data.dtype, np.integer):  # 16/24/32-bit PCM (scipy returns 24-bit as int32)
        wave = data.astype(np.float32) / np.float32(-np.iinfo(data.dtype).min)
    else:
        wave = data.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    bad = int((~np.isfinite(wave)).sum())
    if bad:
        raise ValueError(f"WAV {path} holds {bad} NaN/infinite sample(s); every sample must be finite")
    return wave, rate
