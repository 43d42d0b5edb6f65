"""Sound clips in the page: WAV bytes and rows of ``<audio>`` players, each with its label."""

from __future__ import annotations

import base64
import html
import io
import textwrap
import wave
from collections.abc import Mapping, Sequence

import numpy as np

from magma_teach.viz.style import TEXT_WIDTH


def wav_bytes(audio, rate: int, normalize: bool = True) -> bytes:
    """A mono 16-bit PCM WAV file of ``audio`` (shape ``(n,)`` or ``(1, n)``, floats) at ``rate`` Hz.

    ``normalize`` scales the loudest sample to full scale (as ``IPython.display.Audio`` does);
    without it, samples must lie in [-1, 1]. Raises ``ValueError`` on a non-positive rate, empty,
    multi-channel or non-finite audio, or out-of-range samples when ``normalize=False``.
    """
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"rate must be a positive integer number of samples per second, got {rate!r}")
    x = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"audio must be a non-empty mono waveform of shape (n,) or (1, n), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    peak = float(np.abs(x).max())
    if normalize and peak > 0:
        x = x / peak
    elif not normalize and peak > 1.0:
        raise ValueError(f"audio samples must lie in [-1, 1] when normalize=False, peak is {peak:.3g}")
    pcm = np.round(x * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


class AudioTable:
    """Sound clips as a table: one row per clip, its label(s) in the first cells and its player last.

    Displays as HTML (``<audio controls>`` with the WAV inline, base64), so label and player stay
    together in Jupyter, Colab and the built book; ``text`` is a plain-text fallback.
    """

    def __init__(self, columns: list[str], rows: list[tuple[list[str], bytes, float]], caption: str | None,
                 width: int):
        self.columns, self.rows, self.caption, self.width = columns, rows, caption, width

    def _repr_html_(self) -> str:
        cell = 'style="padding: 0.2em 0.7em; text-align: left; vertical-align: middle;"'
        parts = ['<table class="magma-audio" style="border-collapse: collapse; margin: 0.2em 0 1em 0;">']
        if self.caption:
            parts.append('<caption style="caption-side: top; text-align: left; font-weight: 600;">'
                         f"{html.escape(self.caption)}</caption>")
        heads = "".join(f"<th {cell}>{html.escape(c)}</th>" for c in [*self.columns, "listen"])
        parts.append(f'<thead><tr style="border-bottom: 1px solid #999;">{heads}</tr></thead><tbody>')
        for labels, wav, _ in self.rows:
            data = base64.b64encode(wav).decode("ascii")
            cells = "".join(f"<td {cell}>{html.escape(v)}</td>" for v in labels)
            player = (f'<audio controls preload="metadata" style="height: 2.2em; max-width: 19em;" '
                      f'src="data:audio/wav;base64,{data}"></audio>')
            parts.append(f"<tr>{cells}<td {cell}>{player}</td></tr>")
        parts.append("</tbody></table>")
        return "".join(parts)

    @property
    def text(self) -> str:
        lines = textwrap.wrap(self.caption, self.width) if self.caption else []
        for labels, _, seconds in self.rows:
            entry = ", ".join(f"{c}: {v}" for c, v in zip(self.columns, labels))
            lines += textwrap.wrap(f"{entry} [audio, {seconds:.1f} s]", self.width, subsequent_indent="    ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text


def _clip_parts(clip, i: int, rate: int | None):
    """(labels {column: text}, waveform, rate) of one clip given as a mapping or a tuple."""
    if isinstance(clip, Mapping):
        if "audio" not in clip:
            raise ValueError(f"clips[{i}] has no 'audio' key; a clip is {{'audio': waveform, 'rate': Hz, label: ...}}")
        labels = {str(k): str(v) for k, v in clip.items() if k not in ("audio", "rate")}
        return labels, clip["audio"], clip.get("rate", rate)
    if isinstance(clip, Sequence) and len(clip) in (2, 3) and not isinstance(clip, str):
        return {"clip": str(clip[0])}, clip[1], clip[2] if len(clip) == 3 else rate
    raise ValueError(f"clips[{i}] must be a mapping with an 'audio' key or a tuple (label, audio[, rate]), "
                     f"got {type(clip).__name__}")


def audio_table(clips, rate: int | None = None, caption: str | None = None, normalize: bool = True,
                width: int = TEXT_WIDTH) -> AudioTable:
    """Show sound clips as one table: each row holds a clip's label(s) and its ``<audio>`` player.

    ``clips``: a sequence of mappings ``{"audio": waveform, "rate": Hz, <label>: <value>, ...}`` —
    every key besides ``audio`` and ``rate`` becomes a column, in order — or of tuples
    ``(label, waveform)`` / ``(label, waveform, rate)``. Waveforms are 1-D arrays or tensors of
    floats. ``rate`` (Hz) applies to clips that do not give their own. ``normalize`` scales each
    clip to full loudness (see :func:`wav_bytes`). Raises ``ValueError`` on an empty ``clips``, a
    clip without audio or rate, or clips whose label columns differ.
    """
    if isinstance(clips, (str, bytes)) or not isinstance(clips, Sequence) or not clips:
        raise ValueError("clips must be a non-empty sequence of clips (mappings or (label, audio) tuples)")
    columns, rows = None, []
    for i, clip in enumerate(clips):
        labels, audio, clip_rate = _clip_parts(clip, i, rate)
        if clip_rate is None:
            raise ValueError(f"clips[{i}] has no sample rate: give it a 'rate' or pass rate=... to audio_table")
        if columns is None:
            columns = list(labels)
        elif list(labels) != columns:
            raise ValueError(f"clips[{i}] has label columns {list(labels)}, but clips[0] has {columns}")
        wav = wav_bytes(audio, int(clip_rate), normalize)
        seconds = (len(wav) - 44) / 2 / int(clip_rate)  # 44-byte header, 2 bytes per sample
        rows.append(([labels[c] for c in columns], wav, seconds))
    return AudioTable(columns, rows, caption, width)
