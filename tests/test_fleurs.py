"""The *fleurs* benchmark against FLEURS-like files on a local server, and ``from_folder``; no internet."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from magma_teach.data import fleurs, registry
from magma_teach.data.audio import read_wav
from magma_teach.data.base import SPLITS, char_ids
from magma_teach.data.download import ChecksumError, DownloadError
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task

# 15 real FLEURS codes without published checksums, so the tests also exercise extra_sha256.
FAKE = ["af_za", "ar_eg", "bg_bg", "cs_cz", "da_dk", "el_gr", "fi_fi", "he_il", "hu_hu", "is_is",
        "ka_ge", "lt_lt", "nl_nl", "pl_pl", "tr_tr"]
PER_LANG = 4  # utterances in each fake test split; sentence 0 is read twice
SMALL = {"languages": FAKE, "per_language": 3, "max_frames": 40, "n_mels": 16, "n_way": 5}


def _tone(freq: float, dtype=np.float32, rate: int = 16_000, seconds: float = 0.3) -> np.ndarray:
    wave = 0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)
    return wave.astype(np.float32) if dtype == np.float32 else (wave * 32767).astype(np.int16)


def _wav_bytes(wave: np.ndarray, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, wave)  # float32 → IEEE-float WAV, as FLEURS ships
    return buffer.getvalue()


def _transcript(lang: str, k: int) -> str:
    return f'{lang} says "sentence {k}" it\'s fine'  # quote marks: read with QUOTE_NONE


def _tsv_and_tar(index: int, lang: str, per_lang: int = PER_LANG) -> tuple[bytes, bytes]:
    """One language's ``test.tsv`` (7 columns, no header) and ``audio/test.tar.gz`` (``test/<file>.wav``)."""
    lines, tar_buffer = [], io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:gz") as tar:
        for k in range(per_lang):
            name = f"{1000 * index + k}.wav"
            data = _wav_bytes(_tone(150.0 + 90.0 * index + 5.0 * k))
            info = tarfile.TarInfo(f"test/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            text = _transcript(lang, k)
            sentence = 1500 + (k if k < per_lang - 1 else 0)  # the last file re-reads sentence 0
            lines.append(f"{sentence}\t{name}\t{text.upper()}\t{text}\tc h a r s\t4800\tFEMALE\n")
    return "".join(lines).encode("utf-8"), tar_buffer.getvalue()


def _serve(served, langs=FAKE, per_lang: int = PER_LANG) -> dict:
    """Write FLEURS-like files under ``served/data/<lang>/``; return their checksums for ``extra_sha256``."""
    extra = {}
    for index, lang in enumerate(langs):
        tsv, tar = _tsv_and_tar(index, lang, per_lang)
        (served / "data" / lang / "audio").mkdir(parents=True)
        (served / "data" / lang / "test.tsv").write_bytes(tsv)
        (served / "data" / lang / "audio" / "test.tar.gz").write_bytes(tar)
        extra[f"{lang}/test.tsv"] = hashlib.sha256(tsv).hexdigest()
        extra[f"{lang}/audio/test.tar.gz"] = hashlib.sha256(tar).hexdigest()
    return extra


def _files_under(folder) -> list[str]:
    """Files left under ``folder``, except the empty lock files the cache keeps on purpose (``.locks/``)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and ".locks" not in p.relative_to(folder).parts) if folder.exists() else []


def test_language_table():
    assert len(fleurs.LANGUAGES) == 102 and set(fleurs.NAMES) == set(fleurs.LANGUAGES)
    assert len(set(fleurs.REGION.values())) == 7
    assert fleurs.REGION["nl_nl"] == fleurs.REGION["da_dk"] != fleurs.REGION["cs_cz"]
    assert all(all(k in fleurs.FLEURS_SHA256 for k in (f"{c}/test.tsv", f"{c}/audio/test.tar.gz"))
               for c in fleurs.PINNED)
    assert len(fleurs.PINNED) == 14 and not set(FAKE) & set(fleurs.PINNED)


def test_fake_fleurs_loads_end_to_end(mirror, monkeypatch):
    extra = _serve(mirror)
    ds = registry.load("fleurs", preset="quick", progress=False, extra_sha256=extra, **SMALL)
    n = len(FAKE) * 3
    assert ds.class_names == sorted(FAKE) and ds.source.x.shape == (n, 256) and ds.target.x.shape == (n, 16, 40)
    assert ds.info["sample_rate"] == 16_000 and int(ds.target.lengths.max()) == 31  # 0.3 s = 31 frames
    # Each pair: the text is the transcription of exactly that recording.
    for i, j in ds.pairs.tolist():
        lang, name = ds.info["files"][j].split("/")
        assert lang == ds.class_names[int(ds.target.labels[j])]
        k = int(name.removesuffix(".wav")) % 1000
        assert ds.info["texts"][j] == _transcript(lang, k)
        assert ds.source.x[i].tolist() == char_ids(_transcript(lang, k), 256)[0]
    # Distinct sentences first: of the 4 files (sentence 0 twice), 3 picks never repeat a sentence.
    for lang in FAKE:
        ks = [int(f.split("/")[1].removesuffix(".wav")) % 1000 for f in ds.info["files"] if f.startswith(lang)]
        assert len({k % (PER_LANG - 1) for k in ks}) == 3
    assert sorted(c for s in SPLITS for c in ds.splits[s]) == list(range(15))
    assert all(len(t) == 5 and set(t) <= set(ds.splits["meta_test"]) for t in ds.eval_tasks)
    region = dict(zip(ds.class_names, ds.clusters.tolist()))
    assert region["nl_nl"] == region["da_dk"] and region["bg_bg"] == region["cs_cz"] != region["nl_nl"]
    gen = torch.Generator().manual_seed(0)
    task = sample_classification_task(ds.target, ds.eval_tasks[0], 5, 1, 2, gen, fixed_concepts=True)
    assert task.support[0].shape == (5, 16, 40) and task.query_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    strong = sample_alignment_task(ds, ds.splits["meta_train"], 5, 2, gen)
    assert strong.source[0].shape == (10, 256) and strong.target[0].shape == (10, 16, 40)
    # The downloads are reused offline.
    monkeypatch.setenv("MAGMA_TEACH_MIRROR", "http://127.0.0.1:1")
    files = fleurs.download(fleurs.make_config(extra_sha256=extra, **SMALL), progress=False)
    assert sorted(files) == sorted(FAKE) and files["nl_nl"]["tsv"].name == "nl_nl-test.tsv"


@pytest.mark.parametrize("tamper", ["tsv", "tar"])
def test_tampered_file_is_refused_and_removed(mirror, tmp_path, tamper):
    extra = _serve(mirror)
    first = mirror / "data" / FAKE[0]
    target = first / "test.tsv" if tamper == "tsv" else first / "audio" / "test.tar.gz"
    target.write_bytes(target.read_bytes() + b"\n")
    with pytest.raises(ChecksumError, match=rf"^fleurs: checksum mismatch for {FAKE[0]}-test") as err:
        registry.load("fleurs", progress=False, extra_sha256=extra, **SMALL)
    assert "\n" not in str(err.value)
    left = _files_under(tmp_path / "cache")
    # Only the verified transcript may stay when its archive was the bad file.
    assert left == ([] if tamper == "tsv" else [f"downloads/fleurs/{FAKE[0]}-test.tsv"])


def test_no_network_names_the_offline_benchmark(no_network):
    with pytest.raises(DownloadError, match=r"^fleurs: cannot download .*offline benchmark 'languages'"):
        registry.load("fleurs", progress=False)  # the default: the 14 pinned languages, 4-way


def test_unpinned_or_unknown_languages_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"no pinned SHA-256 for af_za/test\.tsv.*extra_sha256"):
        registry.load("fleurs", cache_dir=tmp_path, progress=False, **SMALL)
    with pytest.raises(ValueError, match=r"unknown FLEURS code\(s\) \['xx_yy'\]"):
        registry.load("fleurs", cache_dir=tmp_path, languages=FAKE[:14] + ["xx_yy"])
    assert fleurs.make_config()["n_way"] == 4  # the default fits the 14 pinned languages
    with pytest.raises(ValueError, match=r"at least 15 .*pass n_way=4"):
        fleurs.make_config(n_way=5)
    with pytest.raises(ValueError, match=r"at least 15 .*got 14"):
        fleurs.make_config(languages=FAKE[:14], n_way=5)
    with pytest.raises(ValueError, match=r"extra_sha256\['af_za/test\.tsv'\] must be a SHA-256"):
        fleurs.make_config(extra_sha256={"af_za/test.tsv": "abc"})


def test_read_wav_handles_pcm16_float_and_stereo(tmp_path):
    wave = _tone(440.0)
    for name, data in (("f.wav", wave), ("i.wav", _tone(440.0, np.int16)), ("s.wav", np.stack([wave, wave], 1))):
        wavfile.write(tmp_path / name, 16_000, data)
        read, rate = read_wav(tmp_path / name)
        assert rate == 16_000 and read.dtype == np.float32 and read.shape == wave.shape
        np.testing.assert_allclose(read, wave, atol=1e-4)


def _folder(root, langs=FAKE, per=3):
    for index, lang in enumerate(langs):
        (root / lang).mkdir(parents=True)
        for k in range(per):
            wavfile.write(root / lang / f"u{k}.wav", 8_000, _tone(150.0 + 90.0 * index, np.int16, rate=8_000))
            (root / lang / f"u{k}.txt").write_text(f"{lang} utterance {k}\n", encoding="utf-8")


def test_from_folder_builds_a_dataset(tmp_path):
    _folder(tmp_path / "speech")
    ds = fleurs.from_folder(tmp_path / "speech", per_language=2, max_frames=40)
    assert ds.name == "speech-folder" and ds.class_names == sorted(FAKE) and len(ds.pairs) == 30
    assert ds.info["sample_rate"] == 8_000 and ds.target.x.shape == (30, 40, 40)
    for i, j in ds.pairs.tolist():
        text = ds.info["texts"][j]
        assert text.startswith(ds.class_names[int(ds.source.labels[i])]) and not text.endswith("\n")
        assert ds.info["files"][j].endswith(f"u{text.split()[-1]}.wav")
    assert len(ds.eval_tasks) == 8 and sorted(c for s in SPLITS for c in ds.splits[s]) == list(range(15))


def test_from_folder_wav_without_transcript(tmp_path):
    _folder(tmp_path / "speech")
    (tmp_path / "speech" / "nl_nl" / "u1.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"nl_nl/u1\.wav has no transcript u1\.txt"):
        fleurs.from_folder(tmp_path / "speech")


def test_the_text_speech_experiment_runs_on_fleurs(mirror, monkeypatch):
    """``run text-speech --data full`` end to end: the 14 pinned languages (served fakes), 4-way tasks."""
    from magma_teach.experiments import run

    pins = _serve(mirror, fleurs.PINNED, per_lang=20)  # the quick preset reads 20 per language
    monkeypatch.setattr(fleurs, "FLEURS_SHA256", pins)  # the fakes' checksums stand in for the published ones
    result = run("text-speech", preset="tiny", data="full", device="cpu", progress=False)
    assert result.data == "full" and set(result.rows["shots"]) == {1, 5}
    assert len(result.rows) == 6 * 2 and result.rows["mean"].between(0, 100).all()
    predictions = result.extras["predictions"]
    assert set(predictions["truth"]) <= set(fleurs.PINNED) and predictions["text"].str.contains("says").all()



def _write_bytes(path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "u1.txt").write_text("  \n", encoding="utf-8"), r"transcript .*nl_nl/u1\.txt is empty"),
    (lambda d: _write_bytes(d / "u1.txt", b"\xff\xfe\xfa"), r"nl_nl/u1\.txt is not UTF-8"),
    (lambda d: _write_bytes(d / "u1.wav", b"RIFF garbage"), r"cannot read WAV .*nl_nl/u1\.wav"),
    (lambda d: _write_bytes(d / "u1.wav", _wav_bytes(np.zeros(0, np.float32))), r"nl_nl/u1\.wav holds no samples"),
    (lambda d: _write_bytes(d / "u1.wav", _wav_bytes(_tone(300.0), rate=0)), r"nl_nl/u1\.wav: its sample rate"),
    (lambda d: _write_bytes(d / "u1.wav", _wav_bytes(np.array([0.1, np.nan] * 200, np.float32))),
     r"nl_nl/u1\.wav holds 200 NaN"),
    (lambda d: _write_bytes(d / "u1.wav", _wav_bytes(np.zeros((400, 2), np.int16)[:, :0])), r"nl_nl/u1\.wav"),
])
def test_from_folder_names_the_broken_file_in_one_line(tmp_path, damage, match):
    _folder(tmp_path / "speech")
    damage(tmp_path / "speech" / "nl_nl")
    with pytest.raises(ValueError, match=match) as err:
        fleurs.from_folder(tmp_path / "speech", max_frames=40)
    assert "\n" not in str(err.value)


def test_from_folder_pads_a_clip_shorter_than_a_frame(tmp_path):
    _folder(tmp_path / "speech")
    wavfile.write(tmp_path / "speech" / "nl_nl" / "u1.wav", 22_050, np.zeros(146, np.float32))  # the clip
    ds = fleurs.from_folder(tmp_path / "speech", max_frames=40)
    short = ds.info["files"].index(str(tmp_path / "speech" / "nl_nl" / "u1.wav"))
    assert int(ds.target.lengths[short]) == 1 and torch.isfinite(ds.target.x).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_mels=90), "n_mels"), (dict(n_mels=0), "n_mels"), (dict(max_chars=0), "max_chars"),
    (dict(max_frames=True), "max_frames"), (dict(n_way=0), "n_way"), (dict(seed=-1), "seed"),
    (dict(per_language=0), "per_language"),
])
def test_from_folder_refuses_bad_settings(tmp_path, kwargs, match):
    _folder(tmp_path / "speech")
    with pytest.raises(ValueError, match=match):
        fleurs.from_folder(tmp_path / "speech", **kwargs)


def test_fleurs_config_refuses_too_many_mel_bands():
    with pytest.raises(ValueError, match=r"n_mels must be an integer in \[1, 89\]"):
        fleurs.make_config(n_mels=128)
