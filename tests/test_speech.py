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


# --- bad input: one parametrized table per function ----------------------------------------------------

_SILENCE = np.zeros(1_000, np.float32)


@pytest.mark.parametrize("waveform, rate, kwargs, match", [
    (_SILENCE, 22_050.9, {}, r"sample_rate must be a whole number of Hz in \[1000, 768000\], got 22050.9"),
    (_SILENCE, 0, {}, "sample_rate"), (_SILENCE, -16_000, {}, "sample_rate"), (_SILENCE, True, {}, "sample_rate"),
    (_SILENCE, float("nan"), {}, "sample_rate"), (_SILENCE, float("inf"), {}, "sample_rate"),
    (_SILENCE, "16000", {}, "sample_rate"), (_SILENCE, None, {}, "sample_rate"), (_SILENCE, 999, {}, "sample_rate"),
    (_SILENCE, 768_001, {}, "sample_rate"),
    (np.zeros(0, np.float32), 16_000, {}, "waveform must hold at least one sample"),
    (np.zeros((2, 500), np.float32), 16_000, {}, r"waveform must be 1-D .* got shape \(2, 500\)"),
    (np.array([0.0, np.nan, 0.1], np.float32), 16_000, {}, "finite samples, got 1 NaN/infinite .* index 1"),
    (np.array([0.0, 0.1, np.inf], np.float32), 16_000, {}, "finite samples.*index 2"),
    (np.zeros(500, np.int16), 16_000, {}, "floating-point samples, got dtype int16 .*scale integer PCM"),
    (["a", "b"], 16_000, {}, "floating-point samples"),
    (_SILENCE, 16_000, dict(n_mels=0), r"n_mels must be an integer in \[1, 89\]"),
    (_SILENCE, 16_000, dict(n_mels=90), "n_mels"), (_SILENCE, 16_000, dict(n_mels=True), "n_mels"),
    (_SILENCE, 16_000, dict(n_mels=40.0), "n_mels"),
    (_SILENCE, 16_000, dict(max_frames=0), "max_frames"), (_SILENCE, 16_000, dict(max_frames=True), "max_frames"),
    (_SILENCE, 16_000, dict(max_frames=2.5), "max_frames"),
])
def test_log_mel_refuses_bad_input_in_one_line(waveform, rate, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        audio.log_mel(waveform, rate, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("samples", [1, 100, 146, 159, 160, 200, 201, 320, 401])
def test_frames_are_one_per_160_samples_at_16khz_and_at_least_one(samples):
    wave = np.random.default_rng(samples).uniform(-0.5, 0.5, samples).astype(np.float32)
    feat = audio.log_mel(wave, 16_000)
    assert feat.shape == (40, 1 + samples // 160) and torch.isfinite(feat).all()


@pytest.mark.parametrize("samples", [1, 100, 146, 159, 160, 200])
def test_a_short_clip_is_the_clip_followed_by_silence(samples):
    wave = np.random.default_rng(samples).uniform(-0.5, 0.5, samples).astype(np.float32)
    feat = audio.log_mel(wave, 16_000)
    padded = audio.log_mel(np.concatenate([wave, np.zeros(1_000, np.float32)]), 16_000)
    torch.testing.assert_close(feat, padded[:, :feat.shape[1]])


def test_the_issue_clip_of_146_samples_gives_one_silent_frame():
    feat = audio.log_mel(np.zeros(146, np.float32), 22_050)
    assert feat.shape == (40, 1)
    assert torch.allclose(feat, torch.full_like(feat, float(np.log(audio.LOG_FLOOR))))


def test_integral_rates_of_any_type_agree():
    wave = np.sin(np.arange(22_050) * 2 * np.pi * 440 / 22_050).astype(np.float32)
    want = audio.log_mel(wave, 22_050)
    for rate in (22_050.0, np.int64(22_050), np.float32(22_050)):
        torch.testing.assert_close(audio.log_mel(wave, rate), want)
    torch.testing.assert_close(audio.log_mel(torch.from_numpy(wave), 22_050), want)


def test_an_awkward_rate_is_resampled_without_a_huge_kernel(monkeypatch):
    # 11,127 Hz reduces to 11127:16000 with 16 kHz: torchaudio's kernel would hold 178 million numbers.
    tone = np.sin(np.arange(11_127) * 2 * np.pi * 440 / 11_127).astype(np.float32)
    with monkeypatch.context() as patch:
        patch.setattr(audio, "_resampler", lambda rate: pytest.fail(f"torchaudio kernel built for {rate} Hz"))
        feat = audio.log_mel(tone, 11_127)
    assert feat.shape == (40, 101) and torch.isfinite(feat).all()
    # SciPy's polyphase path and torchaudio's agree where both work: force 22.05 kHz through SciPy
    tone = np.sin(np.arange(22_050) * 2 * np.pi * 440 / 22_050).astype(np.float32)
    torch_path = audio.log_mel(tone, 22_050)
    monkeypatch.setattr(audio, "_TORCHAUDIO_KERNEL_LIMIT", 0)
    scipy_path = audio.log_mel(tone, 22_050)
    assert scipy_path.shape == torch_path.shape
    # Inside the clip (the two filters differ at its edges) and in the bands that hold the tone:
    inner, ref = scipy_path[:, 3:-3], torch_path[:, 3:-3]
    loud = ref > ref.max() - 20
    assert (inner - ref)[loud].abs().max() < 0.01


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")
def test_max_mels_is_the_last_count_without_an_empty_filter():
    import torchaudio

    bins = audio.N_FFT // 2 + 1
    fbanks = [torchaudio.functional.melscale_fbanks(bins, 0.0, audio.FEATURE_RATE / 2, n, audio.FEATURE_RATE)
              for n in (audio.MAX_MELS, audio.MAX_MELS + 1)]
    assert (fbanks[0].sum(0) > 0).all() and not (fbanks[1].sum(0) > 0).all()
    assert audio.log_mel(_SILENCE, 16_000, n_mels=audio.MAX_MELS).shape[0] == 89


@pytest.mark.parametrize("waveform, snr, generator, match", [
    (_SILENCE, True, 0, "snr_db"), (_SILENCE, float("nan"), 0, "snr_db"), (_SILENCE, float("-inf"), 0, "snr_db"),
    (_SILENCE, 1e308, 0, r"snr_db must be a number of decibels in \[-300, 300\]"), (_SILENCE, -301, 0, "snr_db"),
    (_SILENCE, "10", 0, "snr_db"), (_SILENCE, 10, -1, "generator"), (_SILENCE, 10, True, "generator"),
    (_SILENCE, 10, 1.5, "generator"), (np.zeros((2, 5), np.float32), 10, 0, "1-D"),
    (np.array([0.1, np.nan], np.float32), 10, 0, "finite"), (np.zeros(5, np.int32), 10, 0, "floating-point"),
])
def test_add_noise_refuses_bad_input(waveform, snr, generator, match):
    with pytest.raises(ValueError, match=match):
        audio.add_noise(waveform, snr, generator)


def test_add_noise_leaves_an_empty_waveform_empty_and_takes_the_extreme_snrs():
    assert audio.add_noise(np.zeros(0, np.float32), 10, 0).shape == (0,)
    tone = np.sin(np.arange(1_000) / 5).astype(np.float32)
    for snr in (-300, 300):
        assert np.isfinite(audio.add_noise(tone, snr, 0)).all()
    np.testing.assert_allclose(audio.add_noise(tone, 300, 0), tone, atol=1e-6)


@pytest.mark.parametrize("features, max_frames, match", [
    ([torch.ones(3, 5)], 0, "max_frames"), ([torch.ones(3, 5)], True, "max_frames"),
    ([torch.ones(3, 5)], 2.5, "max_frames"), ([], 4, "at least one spectrogram"),
    ([torch.ones(3, 5), torch.ones(4, 5)], 4, r"features\[1\] must be a tensor of shape \(3, frames >= 1\)"),
    ([torch.ones(3, 0)], 4, r"features\[0\]"), ([np.ones((3, 5))], 4, r"features\[0\]"),
    ([torch.ones(3, 5), torch.tensor([[1.0, float("nan")]] * 3)], 4, r"features\[1\] must hold finite values"),
])
def test_pad_features_refuses_bad_input(features, max_frames, match):
    with pytest.raises(ValueError, match=match):
        audio.pad_features(features, max_frames)


@pytest.mark.parametrize("x, lengths, match", [
    (torch.full((2, 3, 4), -13.8), torch.tensor([4, 4]), "must vary"),  # every clip silent
    (torch.ones(2, 3, 4), torch.tensor([4, 5]), r"lengths must lie in \[0, 4\]"),
    (torch.ones(2, 3, 4), torch.tensor([4, -1]), "lengths must lie"),
    (torch.ones(2, 3, 4), torch.tensor([4]), r"lengths \(N,\)"),
    (torch.ones(2, 4), torch.tensor([4, 4]), r"\(N, n_mels, frames\)"),
    (torch.randn(2, 3, 4), torch.tensor([0, 0]), "at least 2 real frames"),
])
def test_standardize_refuses_what_it_cannot_scale(x, lengths, match):
    with pytest.raises(ValueError, match=match):
        audio.standardize(x, lengths)


def _wav_bytes(rate: int, data: np.ndarray) -> bytes:
    import io

    from scipy.io import wavfile

    buffer = io.BytesIO()
    wavfile.write(buffer, rate, data)
    return buffer.getvalue()


@pytest.mark.parametrize("content, match", [
    (b"RIFF not really a wave file", "cannot read WAV"),
    (_wav_bytes(16_000, np.zeros(0, np.int16)), "holds no samples"),
    (_wav_bytes(0, np.zeros(100, np.int16)), r"its sample rate must be a whole number of Hz .* got 0"),
    (_wav_bytes(16_000, np.array([0.0, np.nan, np.inf], np.float32)), "holds 2 NaN/infinite sample"),
    (_wav_bytes(16_000, np.zeros((100, 0), np.int16)), "cannot read WAV|holds no samples"),
])
def test_read_wav_names_the_file_in_one_line(tmp_path, content, match):
    path = tmp_path / "clip_17.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        audio.read_wav(path)
    assert "clip_17.wav" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "...", "?!"])
def test_a_text_with_nothing_to_say_gives_an_empty_waveform(text):
    wave, rate = speech.synthesize(text)
    assert wave.shape == (0,) and wave.dtype == np.float32 and rate == speech.SAMPLE_RATE


@pytest.mark.parametrize("kwargs, match", [
    (dict(text=3), "text must be a str"), (dict(text=b"hello"), "text must be a str"),
    (dict(text="forty\0two"), "NUL"), (dict(text="a\ud800b"), "unpaired surrogate at position 1"),
    (dict(voice=None), "voice"), (dict(voice=""), "voice"), (dict(voice="xx-not-a-voice"), "voice"),
    (dict(text="", voice="xx-not-a-voice"), "voice"),  # nothing to say, but the voice is still checked
    (dict(variant=3), "variant"), (dict(variant="nobody"), "variant"),
    (dict(rate=True), "rate"), (dict(rate=175.5), "rate"), (dict(rate=79), "rate"), (dict(rate=451), "rate"),
    (dict(pitch=-1), "pitch"), (dict(pitch=101), "pitch"), (dict(pitch=np.float64(50)), "pitch"),
])
def test_synthesize_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        speech.synthesize(**{"text": "hello", **kwargs})


_RECORD = dict(text="forty two", voice="en", variant="m3", rate=150, pitch=50, snr_db=10.0, noise_seed=3)


@pytest.mark.parametrize("change, match", [
    (dict(rate=175.9), "rate"), (dict(pitch=True), "pitch"), (dict(snr_db=float("nan")), "snr_db"),
    (dict(snr_db="5"), "snr_db"), (dict(snr_db=True), "snr_db"), (dict(noise_seed=-1), "noise_seed"),
    (dict(noise_seed=1.5), "noise_seed"), (dict(text=5), "text"), (dict(voice=None), "voice"),
    (dict(variant=7), "variant"),
])
def test_utterance_records_are_checked_not_rounded(change, match):
    with pytest.raises(ValueError, match=match):
        speech.utterance(**{**_RECORD, **change})


def test_featurize_names_the_utterance_it_cannot_use():
    records = [speech.utterance(**_RECORD), speech.utterance(**{**_RECORD, "text": "..."})]
    with pytest.raises(ValueError, match=r"utterance 1 \('\.\.\.', voice 'en'\): waveform must hold at least one"):
        speech.featurize(records, 40, 50)
    with pytest.raises(ValueError, match="n_mels"):
        speech.featurize(records, 90, 50)


def test_speak_target_refuses_a_bool_index():
    from types import SimpleNamespace

    dataset = SimpleNamespace(name="toy", info={"utterances": [speech.utterance(**_RECORD)] * 2})
    assert speech.speak_target(dataset, 1)[0].size > 0
    with pytest.raises(ValueError, match="index"):
        speech.speak_target(dataset, True)


def test_one_thread_restores_the_count_when_threads_interleave():
    before = torch.get_num_threads()
    entered, leave_first = threading.Barrier(2), threading.Event()
    seen = []

    def first():
        with audio.one_thread():
            entered.wait()
            seen.append(torch.get_num_threads())
        leave_first.set()  # leaves while the other is still inside

    def second():
        with audio.one_thread():
            entered.wait()
            leave_first.wait()
            seen.append(torch.get_num_threads())  # still one thread: the other block is gone, this one is not
        seen.append(("after second", torch.get_num_threads()))

    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert seen == [1, 1, ("after second", before)] and torch.get_num_threads() == before
    with audio.one_thread():
        with audio.one_thread():  # nested
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
