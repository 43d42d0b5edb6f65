"""From a waveform to what an audio encoder reads: noise, log-mel spectrogram, padding.

The features follow the usual speech front end: resample to 16 kHz, a 25 ms Hann window every 10 ms
(so 100 frames per second), ``n_mels`` mel bands, and the natural log of the mel power plus 1e-6
(the small constant keeps silence finite: log(1e-6) ≈ -13.8). :func:`pad_features` then stacks
spectrograms of different lengths into one (N, n_mels, max_frames) tensor, zero past each length,
which is the audio :class:`~magma_teach.data.base.Modality` layout.

:func:`add_noise` mixes white noise in at a chosen signal-to-noise ratio. Here any real ``snr_db`` is
allowed: a negative value (noise louder than the speech) is a legitimate listening condition. The
benchmarks built on top are stricter and reject a negative SNR, because below 0 dB white noise
drowns eSpeak's quiet consonants and the task stops being about what is said.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os

import numpy as np
import torch
import torchaudio

FEATURE_RATE = 16_000  # Hz: every waveform is resampled to this before the mel filterbank
WINDOW_MS, HOP_MS = 25, 10
LOG_FLOOR = 1e-6


@functools.lru_cache(maxsize=None)
def _resampler(orig_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_rate, FEATURE_RATE)


@functools.lru_cache(maxsize=None)
def _mel(n_mels: int) -> torchaudio.transforms.MelSpectrogram:
    win = FEATURE_RATE * WINDOW_MS // 1000
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=FEATURE_RATE, n_fft=win, win_length=win, hop_length=FEATURE_RATE * HOP_MS // 1000,
        n_mels=n_mels, power=2.0)


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block, then restore the previous setting.

    A spectrogram of one utterance is a few thousand numbers: splitting such small operations over
    threads only adds hand-over cost, and on a busy 2-core machine it made log-mel ~100x slower
    (70 ms instead of 0.7 ms per utterance). Loops over many small waveforms run inside this.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_tensor(waveform) -> torch.Tensor:
    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if wave.dim() != 1:
        raise ValueError(f"waveform must be 1-D (samples,), got shape {tuple(wave.shape)}")
    return wave


def log_mel(waveform, sample_rate: int, n_mels: int = 40, max_frames: int | None = None) -> torch.Tensor:
    """Log-mel spectrogram of a mono waveform (samples,) → float32 tensor (n_mels, frames).

    ``frames`` is ``1 + samples_at_16kHz // 160``: 100 frames per second of audio. With ``max_frames``
    only the start of a long recording is transformed, plus 0.1 s: resampling and windows reach past a
    frame's own 10 ms, and the margin keeps the first ``max_frames`` frames equal to those of the whole
    recording. :func:`pad_features` then crops to ``max_frames``.
    """
    if not (isinstance(n_mels, int) and n_mels > 0):
        raise ValueError(f"n_mels must be a positive integer, got {n_mels!r}")
    if max_frames is not None:
        waveform = waveform[: int(sample_rate * (max_frames * HOP_MS / 1000 + 0.1))]
    wave = _as_tensor(waveform)
    with torch.no_grad():
        if sample_rate != FEATURE_RATE:
            wave = _resampler(int(sample_rate))(wave)
        return torch.log(_mel(n_mels)(wave) + LOG_FLOOR)


def add_noise(waveform, snr_db: float, generator: np.random.Generator | int) -> np.ndarray:
    """Return ``waveform + white noise`` with the given signal-to-noise ratio in dB, as float32 (samples,).

    The noise power is the mean signal power divided by ``10 ** (snr_db / 10)``; ``generator`` (a NumPy
    generator or an integer seed) draws it, so the same seed gives the same noisy waveform. Any finite
    ``snr_db`` is accepted (negative = noise louder than the signal). A silent waveform is returned
    unchanged, since its SNR is undefined. The result is not clipped.
    """
    if not (isinstance(snr_db, (int, float)) and math.isfinite(snr_db)):
        raise ValueError(f"snr_db must be a finite number of decibels, got {snr_db!r}")
    wave = np.asarray(waveform, dtype=np.float32)
    power = float(np.mean(wave.astype(np.float64) ** 2)) if wave.size else 0.0
    if power == 0.0:
        return wave.copy()
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    scale = math.sqrt(power / 10 ** (snr_db / 10))
    return (wave + scale * rng.standard_normal(wave.shape)).astype(np.float32)


def pad_features(features: list[torch.Tensor], max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack spectrograms (n_mels, frames_i) into ``x`` (N, n_mels, max_frames) and ``lengths`` (N,).

    Longer spectrograms are cropped to their first ``max_frames`` frames; shorter ones are padded
    with 0 and their ``lengths`` entry says how many frames are real.
    """
    if not (isinstance(max_frames, int) and max_frames > 0):
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    if not features:
        raise ValueError("features must hold at least one spectrogram")
    n_mels = features[0].shape[0]
    x = torch.zeros(len(features), n_mels, max_frames)
    lengths = torch.zeros(len(features), dtype=torch.long)
    for i, feat in enumerate(features):
        if feat.dim() != 2 or feat.shape[0] != n_mels:
            raise ValueError(f"features[{i}] must have shape ({n_mels}, frames), got {tuple(feat.shape)}")
        n = min(feat.shape[1], max_frames)
        x[i, :, :n] = feat[:, :n]
        lengths[i] = n
    return x, lengths


def standardize(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Shift and scale padded spectrograms (N, n_mels, frames) to mean 0, std 1 over their real frames.

    Returns ``(x_standardized, mean, std)``; padding stays 0 (now the average value rather than a
    loud log(1) = 0), so an encoder that forgot the mask would at least see neutral values. Apply the
    same ``(feat - mean) / std`` to a new spectrogram to compare it with the stored ones.
    """
    mask = torch.arange(x.shape[-1]) < lengths[:, None]  # (N, frames)
    # float64 sums: a float32 sum over ~10^6 values depends on how threads split it, and the same
    # seed must give the same bits.
    real = x.transpose(1, 2)[mask].double()  # (total real frames, n_mels)
    mean, std = real.mean().item(), real.std().item()
    out = (x - mean) / std
    return out * mask[:, None, :], mean, std


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV file as mono float32 samples in [-1, 1] (samples,) and its sample rate.

    Handles 8/16/24/32-bit PCM (ESC-50: 16-bit) and 32/64-bit float (FLEURS ships float32), via ``scipy.io.wavfile``
    (the ``wave`` module cannot read float WAVs); several channels are averaged.
    """
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read WAV {path}: {err}") from None
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        wave = (data.astype(np.float32) - 128) / 128
    elif np.issubdtype(data.dtype, np.integer):  # 16/24/32-bit PCM (scipy returns 24-bit as int32)
        wave = data.astype(np.float32) / np.float32(-np.iinfo(data.dtype).min)
    else:
        wave = data.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.size == 0:
        raise ValueError(f"WAV {path} holds no samples")
    return wave, int(rate)
