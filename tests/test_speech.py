"""eSpeak NG synthesis (magma_teach.data.speech) and the audio front end (magma_teach.data.audio)."""

import threading
import time

import numpy as np
import pytest
import torch

from magma_teach.data import audio, speech


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    n = min(a.shape[1], b.shape[1])
    return (a[:, :n] - b[:, :n]).abs().mean().item()


def test_synthesize_returns_float_waveform_at_22050():
    wave, rate = speech.synthesize("hello world", "en")
    assert rate == speech.SAMPLE_RATE == 22_050
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.3 * rate < len(wave) < 3 * rate
    assert -1.0 <= wave.min() < 0 < wave.max() <= 1.0


@pytest.mark.parametrize("variant", ["f3", "m2", None])  # f3 is breathy: it uses eSpeak's noise generator
def test_same_arguments_same_samples_even_after_other_calls(variant):
    first, _ = speech.synthesize("forty seven", "en", variant, 150, 60)
    speech.synthesize("bonjour tout le monde", "fr", "f5", 300, 10)
    if variant == "f3":
        time.sleep(1.05)  # eSpeak seeds its noise from the clock (seconds) unless re-seeded
    again, _ = speech.synthesize("forty seven", "en", variant, 150, 60)
    np.testing.assert_array_equal(first, again)


def test_variant_rate_and_pitch_change_the_sound():
    base, _ = speech.synthesize("seventy three", "en", "m1", 175, 50)
    for other in (dict(variant="f2"), dict(rate=300), dict(pitch=90)):
        args = {"variant": "m1", "rate": 175, "pitch": 50, **other}
        wave, _ = speech.synthesize("seventy three", "en", **args)
        assert len(wave) != len(base) or not np.array_equal(wave, base), other
    fast, _ = speech.synthesize("seventy three", "en", "m1", 350, 50)
    assert len(fast) < 0.8 * len(base)


def test_numerals_are_read_in_the_voice_language():
    said = audio.log_mel(*speech.synthesize("42", "fr"))
    options = [("quarante-deux", "fr"), ("quarante-trois", "fr"), ("cinquante-deux", "fr"), ("forty-two", "en")]
    candidates = {text: audio.log_mel(*speech.synthesize(text, voice)) for text, voice in options}
    nearest = min(candidates, key=lambda t: _distance(said, candidates[t]))
    assert nearest == "quarante-deux"


def test_threads_get_the_same_results_as_sequential_calls():
    texts = [str(n) for n in range(20, 28)]
    expected = [speech.synthesize(t, "de", "m4")[0] for t in texts]
    results = [None] * len(texts)

    def work(i):
        results[i] = speech.synthesize(texts[i], "de", "m4")[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_variants_and_voices_come_from_the_data_folder():
    assert set(speech.VARIANTS) <= set(speech.available_variants())
    voices = speech.available_voices()
    assert {"en", "fr", "cmn", "hr", "nb"} <= set(voices)


@pytest.mark.parametrize("kwargs, field", [
    (dict(rate=20), "rate"), (dict(rate=175.5), "rate"), (dict(pitch=101), "pitch"),
    (dict(voice="xx-not-a-voice"), "voice"), (dict(variant="nobody"), "variant")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        speech.synthesize("hello", **kwargs)


def test_unloadable_library_is_a_clear_runtime_error(monkeypatch, tmp_path):
    fake = tmp_path / "libespeak-ng.so"
    fake.write_bytes(b"not a shared library")
    monkeypatch.setattr(speech, "_private_copy", None)
    monkeypatch.setattr(speech, "_paths", lambda: (str(fake), str(tmp_path)))
    with pytest.raises(RuntimeError, match="eSpeak NG could not be loaded"):
        speech.synthesize("hello")


def test_render_replays_an_utterance_record_exactly():
    record = speech.utterance("eighty one", "en", "m5", 140, 30, snr_db=5.0, noise_seed=123)
    a, rate = speech.render(record)
    b, _ = speech.render(dict(record))
    np.testing.assert_array_equal(a, b)
    clean, _ = speech.synthesize("eighty one", "en", "m5", 140, 30)
    assert len(a) == len(clean) and not np.array_equal(a, clean)


# --- audio front end ---------------------------------------------------------------------------------

def test_log_mel_shape_is_bands_by_10ms_frames():
    wave = np.zeros(22_050, dtype=np.float32)  # 1 s of silence at 22.05 kHz
    feat = audio.log_mel(wave, 22_050, n_mels=40)
    assert feat.shape == (40, 101) and feat.dtype == torch.float32
    assert torch.allclose(feat, torch.full_like(feat, float(np.log(1e-6))))
    assert audio.log_mel(np.zeros(16_000, np.float32), 16_000, n_mels=24).shape == (24, 101)


def test_add_noise_hits_the_requested_snr_and_is_seeded():
    wave, _ = speech.synthesize("the quick brown fox", "en")
    for snr in (0.0, 10.0, 20.0, -5.0):  # negative SNR is allowed here (noise louder than speech)
        noisy = audio.add_noise(wave, snr, np.random.default_rng(0))
        noise = noisy - wave
        measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert abs(measured - snr) < 0.2
    np.testing.assert_array_equal(audio.add_noise(wave, 10, 7), audio.add_noise(wave, 10, 7))
    assert not np.array_equal(audio.add_noise(wave, 10, 7), audio.add_noise(wave, 10, 8))
    silent = np.zeros(100, np.float32)
    np.testing.assert_array_equal(audio.add_noise(silent, 10, 0), silent)


@pytest.mark.parametrize("snr", [float("nan"), float("inf"), "10"])
def test_add_noise_rejects_non_finite_snr(snr):
    with pytest.raises(ValueError, match="snr_db"):
        audio.add_noise(np.ones(10, np.float32), snr, 0)


def test_pad_features_crops_and_pads_with_lengths():
    feats = [torch.ones(3, 5), torch.full((3, 12), 2.0)]
    x, lengths = audio.pad_features(feats, max_frames=8)
    assert x.shape == (2, 3, 8) and lengths.tolist() == [5, 8]
    assert (x[0, :, 5:] == 0).all() and (x[0, :, :5] == 1).all() and (x[1] == 2).all()
    with pytest.raises(ValueError, match="max_frames"):
        audio.pad_features(feats, max_frames=0)


def test_standardize_uses_real_frames_only_and_keeps_padding_zero():
    x = torch.zeros(2, 1, 4)
    x[0, 0, :2] = torch.tensor([1.0, 3.0])
    x[1, 0, :4] = torch.tensor([1.0, 3.0, 1.0, 3.0])
    out, mean, std = audio.standardize(x, torch.tensor([2, 4]))
    assert mean == pytest.approx(2.0)
    assert (out[0, 0, 2:] == 0).all()
    assert out[0, 0, 0].item() == pytest.approx(-1 / std)
