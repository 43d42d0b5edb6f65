"""The *esc50* benchmark (CIFAR → ESC-50) against tiny archives in the real formats, served locally."""

import csv
import hashlib
import io
import pickle
import tarfile
import wave
import zipfile

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from magma_teach.data import esc50, registry
from magma_teach.data.audio import read_wav
from magma_teach.data.download import ChecksumError, DownloadError
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task
from magma_teach.data.esc50 import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CLUSTERS,
    ESC50_CLASSES,
)

COMMIT = esc50.ESC50_COMMIT
CLIPS_PER_CLASS = 8  # enough for 5-shot tasks with queries (the experiment test)
SMALL = {"images_per_class": 3, "max_frames": 30, "n_eval_tasks": 3}
COARSE = ["aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
          "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
          "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
          "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
          "vehicles_1", "vehicles_2"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- fixture archives in the real formats --------------------------------------------------------------

def _images(labels: list[int]) -> np.ndarray:
    """(N, 3072) uint8 rows, CIFAR's channel-major layout; a flat colour per class so gzip shrinks it."""
    return np.repeat(np.array(labels, dtype=np.uint8)[:, None] * 2, 3072, axis=1)


def _pickle(obj) -> bytes:
    # CIFAR's files are Python 2 pickles whose str keys load as str with encoding="latin1"; protocol 2
    # with str keys gives torchvision the same dicts.
    return pickle.dumps(obj, protocol=2)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cifar10_files() -> dict[str, bytes]:
    """cifar-10-batches-py: five training batches (two images per class each), a test batch, the meta file."""
    def batch(name, labels):
        return _pickle({"batch_label": name, "labels": labels, "data": _images(labels),
                        "filenames": [f"img_{i}.png" for i in range(len(labels))]})
    files = {f"data_batch_{k}": batch(f"training batch {k} of 5", list(range(10)) * 2) for k in range(1, 6)}
    files["test_batch"] = batch("testing batch 1 of 1", list(range(10)))
    files["batches.meta"] = _pickle({"label_names": CIFAR10_CLASSES, "num_cases_per_batch": 10, "num_vis": 3072})
    return files


def cifar100_files() -> dict[str, bytes]:
    """cifar-100-python: ``train`` (8 images per class), ``test`` and ``meta``."""
    def split(labels):
        return _pickle({"filenames": [f"img_{i}.png" for i in range(len(labels))], "batch_label": "b",
                        "fine_labels": labels, "coarse_labels": [0] * len(labels), "data": _images(labels)})
    return {"train": split(list(range(100)) * 8), "test": split(list(range(100))),
            "meta": _pickle({"fine_label_names": CIFAR100_CLASSES, "coarse_label_names": COARSE})}


def _wav(freq: float, seconds: float = 0.2, rate: int = 44_100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()


def esc50_csv() -> bytes:
    """meta/esc50.csv for CLIPS_PER_CLASS clips of every class, sorted by filename like the real one."""
    rows = [(f"{fold}-{1000 + target}-A-{target}.wav", fold, target, name, str(target in (0, 1)), 1000 + target, "A")
            for target, name in enumerate(ESC50_CLASSES) for fold in range(1, CLIPS_PER_CLASS + 1)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
    writer.writerows(sorted(rows))
    return buffer.getvalue().encode()


def esc50_zip(table: bytes) -> bytes:
    top = f"ESC-50-{COMMIT}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr(f"{top}/meta/esc50.csv", table)
        for row in csv.DictReader(io.StringIO(esc50_csv().decode())):
            handle.writestr(f"{top}/audio/{row['filename']}", _wav(200.0 + 60 * int(row["target"])))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archives():
    """The three archives (bytes) and the per-file CIFAR checksums torchvision should expect."""
    c10, c100 = cifar10_files(), cifar100_files()
    return {
        "cifar10": _tar_gz({f"cifar-10-batches-py/{k}": v for k, v in c10.items()}), "cifar10_files": c10,
        "cifar100": _tar_gz({f"cifar-100-python/{k}": v for k, v in c100.items()}), "cifar100_files": c100,
        "esc50": esc50_zip(esc50_csv()),
    }


def _pin_cifar(monkeypatch, archives, cifar10_tgz: bytes | None = None):
    """Point torchvision's (and so our) CIFAR checksums at the fixture files."""
    c10, c100 = archives["cifar10_files"], archives["cifar100_files"]
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(cifar10_tgz or archives["cifar10"]))
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", _md5(c10[f"data_batch_{k}"])] for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(c10["test_batch"])]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": _md5(c10["batches.meta"])})
    monkeypatch.setattr(CIFAR100, "tgz_md5", _md5(archives["cifar100"]))
    monkeypatch.setattr(CIFAR100, "train_list", [["train", _md5(c100["train"])]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", _md5(c100["test"])]])
    monkeypatch.setattr(CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": _md5(c100["meta"])})


def _serve(mirror, archives, monkeypatch, esc50_zip: bytes | None = None, cifar10: bytes | None = None):
    """Put the archives at their Remote paths in the mirror and pin the checksums to the good ones."""
    (mirror / esc50.CIFAR_ARCHIVES["cifar10"]).write_bytes(cifar10 or archives["cifar10"])
    (mirror / esc50.CIFAR_ARCHIVES["cifar100"]).write_bytes(archives["cifar100"])
    (mirror / f"{COMMIT}.zip").write_bytes(esc50_zip or archives["esc50"])
    monkeypatch.setattr(esc50, "ESC50_CSV_HASH", "sha256:" + hashlib.sha256(esc50_csv()).hexdigest())
    _pin_cifar(monkeypatch, archives, cifar10)


def _files_under(folder) -> list[str]:
    """Files left under ``folder``, except the empty lock files the cache keeps on purpose (``.locks/``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and ".locks" not in p.relative_to(folder).parts) if folder.exists() else []


# --- 1. a good download loads end to end -------------------------------------------------------------

def test_good_archives_load_end_to_end(mirror, archives, monkeypatch, tmp_path):
    _serve(mirror, archives, monkeypatch)
    data = registry.load("esc50", preset="quick", progress=False, **SMALL)
    n_src = 110
    assert data.name == "esc50" and data.num_classes == n_src + 50
    assert data.class_names[3] == "cifar:cat" and data.class_names[n_src + 5] == "esc50:cat"
    assert len(set(data.class_names)) == data.num_classes
    assert data.source.x.shape == (n_src * 3, 3, 32, 32) and data.source.x.dtype == torch.float32
    assert 0 <= data.source.x.min() and data.source.x.max() <= 1
    assert torch.equal(torch.bincount(data.source.labels), torch.full((n_src,), 3))
    assert data.target.kind == "audio" and data.target.x.shape == (50 * CLIPS_PER_CLASS, 40, 30)
    assert (data.target.lengths == 21).all()  # 0.2 s at 100 frames per second, + 1
    assert data.pairs.shape == (0, 2) and data.pairs.dtype == torch.int64
    assert "strong pairs: 0; weak-pair clusters: " in "\n".join(registry.info_lines(data))

    # Splits: disjoint, meta-test and val only audio classes, meta-train = all CIFAR + 23 clustered audio.
    train, val, test = (set(data.splits[s]) for s in ("meta_train", "val", "meta_test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == data.num_classes
    assert set(range(n_src)) <= train and len(train) == n_src + 23
    assert min(val | test) >= n_src and (len(val), len(test)) == (7, 20)
    assert data.info["n_unlabeled_meta_train_clips"] == 23 * CLIPS_PER_CLASS

    # Clusters: CIFAR "bird" and ESC-50 "crow" share one; an unclustered class is alone.
    clusters = data.clusters.tolist()
    assert clusters[CIFAR10_CLASSES.index("bird")] == clusters[n_src + ESC50_CLASSES.index("crow")] == 2
    rain = clusters[n_src + ESC50_CLASSES.index("rain")]
    assert rain >= 17 and clusters.count(rain) == 1 and data.info["cluster_names"][rain] == "esc50:rain"

    gen = torch.Generator().manual_seed(0)
    task_concepts = data.eval_tasks[0]
    assert len(task_concepts) == 5 and set(task_concepts) <= test
    task = sample_classification_task(data.target, task_concepts, 5, 1, 2, gen, fixed_concepts=True)
    assert task.support[0].shape == (5, 40, 30) and task.query_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    align = sample_alignment_task(data, data.splits["meta_train"], 5, 4, gen, weak=True)
    assert align.source[0].shape == (20, 3, 32, 32) and align.target[0].shape == (20, 40, 30)
    assert torch.equal(align.groups_s, torch.arange(5).repeat_interleave(4))

    # Loaded again from the cache: no network needed.
    monkeypatch.setenv("MAGMA_TEACH_MIRROR", "http://127.0.0.1:1")
    again = registry.load("esc50", preset="quick", progress=False, **SMALL)
    assert again.splits == data.splits and torch.equal(again.target.x, data.target.x)


def test_clustered_source_uses_only_the_34_clustered_cifar_classes(mirror, archives, monkeypatch):
    _serve(mirror, archives, monkeypatch)
    data = esc50.build(esc50.make_config(source_classes="clustered", **SMALL), progress=False)
    assert data.num_classes == 34 + 50 and data.class_names[:2] == ["cifar:airplane", "cifar:automobile"]
    assert (data.clusters[:34] < 17).all()  # every source class has a partner cluster


def test_download_fetches_and_checks_all_three(mirror, archives, monkeypatch):
    _serve(mirror, archives, monkeypatch)
    folders = esc50.download(progress=False)
    assert sorted(folders) == ["cifar10", "cifar100", "esc50"]
    assert (folders["esc50"] / "meta" / "esc50.csv").is_file()
    assert (folders["cifar10"] / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert (folders["cifar100"] / "cifar-100-python" / "train").is_file()


# --- 2. tampered data is refused and removed ------------------------------------------------------------

def test_tampered_esc50_csv_is_refused_and_removed(mirror, archives, monkeypatch, tmp_path):
    tampered = esc50_zip(esc50_csv().replace(b",dog,", b",cat,", 1))
    _serve(mirror, archives, monkeypatch, esc50_zip=tampered)
    with pytest.raises(ChecksumError, match=r"^esc50: checksum mismatch for .*meta/esc50\.csv") as err:
        registry.load("esc50", progress=False, **SMALL)
    assert "\n" not in str(err.value)
    assert _files_under(tmp_path / "cache") == []  # only empty folders are left


def test_a_missing_clip_is_refused_and_the_download_removed(mirror, archives, monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archives["esc50"])) as good, zipfile.ZipFile(buffer, "w") as bad:
        for info in good.infolist()[:-1]:  # drop the last clip; the pinned csv still lists it
            bad.writestr(info, good.read(info))
    _serve(mirror, archives, monkeypatch, esc50_zip=buffer.getvalue())
    with pytest.raises(ChecksumError, match=r"^esc50: clip audio/.*\.wav is missing or unreadable"):
        registry.load("esc50", progress=False, **SMALL)
    assert _files_under(tmp_path / "cache" / "downloads" / "esc50") == []


def test_tampered_cifar_batch_fails_torchvisions_check(mirror, archives, monkeypatch, tmp_path):
    files = dict(archives["cifar10_files"], data_batch_3=b"not the real batch")
    bad = _tar_gz({f"cifar-10-batches-py/{k}": v for k, v in files.items()})
    _serve(mirror, archives, monkeypatch, cifar10=bad)  # the archive's md5 matches; a file inside does not
    with pytest.raises(ChecksumError, match=r"^cifar10: torchvision's checksum check") as err:
        registry.load("esc50", progress=False, **SMALL)
    assert "\n" not in str(err.value)
    assert _files_under(tmp_path / "cache" / "downloads" / "cifar10") == []


def test_tampered_cifar_archive_is_refused(mirror, archives, monkeypatch, tmp_path):
    _serve(mirror, archives, monkeypatch)
    (mirror / esc50.CIFAR_ARCHIVES["cifar100"]).write_bytes(archives["cifar10"])  # wrong bytes
    with pytest.raises(ChecksumError, match=r"^cifar100: checksum mismatch"):
        esc50.download_cifar(progress=False)
    assert _files_under(tmp_path / "cache" / "downloads" / "cifar100") == []


# --- 3. offline -----------------------------------------------------------------------------------------

def test_no_network_names_the_dataset_and_the_offline_benchmark(no_network):
    with pytest.raises(DownloadError) as err:
        registry.load("esc50", progress=False, **SMALL)
    message = str(err.value)
    assert message.startswith("esc50: cannot download") and "'numbers'" in message and "\n" not in message
    assert _files_under(no_network) == []


# --- 4. constants and the audio split (no downloads) ----------------------------------------------------

def test_class_lists_are_cifar_and_esc50():
    assert len(CIFAR10_CLASSES) == 10 and len(CIFAR100_CLASSES) == 100 and CIFAR100_CLASSES == sorted(CIFAR100_CLASSES)
    assert not set(CIFAR10_CLASSES) & set(CIFAR100_CLASSES)
    assert len(set(ESC50_CLASSES)) == 50 and ESC50_CLASSES[0] == "dog" and ESC50_CLASSES[49] == "hand_saw"
    assert ESC50_CLASSES[20] == "crying_baby" and ESC50_CLASSES[43] == "car_horn"


def test_clusters_name_real_classes_once_each():
    assert len(CLUSTERS) == 17
    images = [name for cifar, _ in CLUSTERS.values() for name in cifar]
    sounds = [name for _, esc in CLUSTERS.values() for name in esc]
    assert set(images) <= set(CIFAR10_CLASSES) | set(CIFAR100_CLASSES) and len(images) == len(set(images)) == 34
    assert set(sounds) <= set(ESC50_CLASSES) and len(sounds) == len(set(sounds)) == 35
    assert CLUSTERS["human"][1][-1] == "drinking_sipping" and CLUSTERS["containers_glass"][0] == [
        "bottle", "bowl", "cup", "plate"]


@pytest.mark.parametrize("seed", range(5))
def test_audio_split_invariants(seed):
    split = esc50.audio_split(seed)
    train, val, test = (set(split[s]) for s in ("meta_train", "val", "meta_test"))
    assert (len(train), len(val), len(test)) == (23, 7, 20)
    assert not (train & val or train & test or val & test) and train | val | test == set(ESC50_CLASSES)
    assert train <= set(esc50.clustered_audio_classes())
    assert all(train & set(esc) for _, esc in CLUSTERS.values())  # every cluster keeps an audio class
    assert split == esc50.audio_split(seed)


def test_splits_differ_between_seeds():
    assert esc50.audio_split(0) != esc50.audio_split(1)


@pytest.mark.parametrize("override, field", [
    ({"n_meta_train_audio": 16}, "n_meta_train_audio"), ({"n_meta_train_audio": 36}, "n_meta_train_audio"),
    ({"n_val_audio": 4}, "n_val_audio"), ({"n_val_audio": 25}, "n_meta_train_audio \\+ n_val_audio"),
    ({"source_classes": "some"}, "source_classes"), ({"images_per_class": 0}, "images_per_class"),
    ({"colour": True}, "unknown setting"), ({"n_mels": 90}, r"n_mels must be an integer in \[1, 89\]"),
    ({"n_mels": 0}, "n_mels"), ({"n_mels": True}, "n_mels"), ({"max_frames": 0}, "max_frames"),
])
def test_bad_settings_are_clear_errors(override, field):
    with pytest.raises(ValueError, match=field):
        esc50.make_config(**override)


def test_read_wav_handles_widths_and_channels(tmp_path):
    path = tmp_path / "stereo24.wav"
    left = np.array([0, 2**22, -(2**23), -(2**22)], dtype=np.int32)
    right = np.array([0, 2**22, -(2**23), 0], dtype=np.int32)
    frames = np.stack([left, right], axis=1).reshape(-1)  # interleaved stereo, averaged to mono
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in frames)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(3)
        handle.setframerate(8000)
        handle.writeframes(raw)
    wave_, rate = read_wav(path)
    assert rate == 8000 and wave_.dtype == np.float32 and wave_.tolist() == [0.0, 0.5, -1.0, -0.25]
    (tmp_path / "mono.wav").write_bytes(_wav(440.0, 0.01))
    mono, rate = read_wav(tmp_path / "mono.wav")
    assert rate == 44_100 and mono.shape == (441,) and 0.29 < np.abs(mono).max() <= 0.3
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="cannot read WAV .*bad.wav"):
        read_wav(tmp_path / "bad.wav")


def test_the_image_audio_experiment_runs_on_the_full_loader(mirror, archives, monkeypatch):
    """``run image-audio --data full`` end to end on the fixture archives (tiny preset: seconds)."""
    from magma_teach.experiments import run

    _serve(mirror, archives, monkeypatch)
    result = run("image-audio", preset="tiny", data="full", device="cpu", progress=False)
    assert result.data == "full" and set(result.rows["shots"]) == {1, 5}
    assert len(result.rows) == 6 * 2 and result.rows["mean"].between(0, 100).all()
    magma = result.rows[result.rows["approach"] == "MAGMA"].iloc[0]
    assert magma["target_labels"] == 0 and magma["target_samples"] == 23 * CLIPS_PER_CLASS



def _clip_folder(tmp_path, clips: dict[str, bytes]):
    folder = tmp_path / "download" / f"ESC-50-{COMMIT}"
    (folder / "audio").mkdir(parents=True)
    for name, data in clips.items():
        (folder / "audio" / name).write_bytes(data)
    return folder, [{"filename": name} for name in clips]


def _pcm_wav(samples: np.ndarray, rate: int = 44_100) -> bytes:
    from scipy.io import wavfile

    buffer = io.BytesIO()
    wavfile.write(buffer, rate, samples.astype(np.int16))  # 16-bit PCM as ESC-50; any rate, even 0
    return buffer.getvalue()


def test_esc50_features_pad_a_clip_shorter_than_a_frame(tmp_path):
    tone = (3000 * np.sin(np.arange(44_100) * 2 * np.pi * 440 / 44_100)).astype(np.int16)
    folder, rows = _clip_folder(tmp_path, {"1-1-A-0.wav": _pcm_wav(tone), "1-2-A-0.wav": _pcm_wav(tone[:146])})
    x, lengths = esc50.esc50_features(folder, rows, 40, 50, show=False)
    assert x.shape == (2, 40, 50) and lengths.tolist() == [50, 1] and torch.isfinite(x).all()


@pytest.mark.parametrize("clip, match", [
    (b"RIFF not a wave", r"clip audio/1-2-A-0\.wav is missing or unreadable"),
    (_pcm_wav(np.zeros(0, np.int16)), r"clip audio/1-2-A-0\.wav"),
    (_pcm_wav(np.zeros(100, np.int16), rate=0), r"clip audio/1-2-A-0\.wav"),
])
def test_esc50_features_name_the_clip_they_cannot_read(tmp_path, clip, match):
    tone = np.zeros(4_410, np.int16)
    folder, rows = _clip_folder(tmp_path, {"1-1-A-0.wav": _pcm_wav(tone), "1-2-A-0.wav": clip})
    with pytest.raises(ChecksumError, match=match) as err:
        esc50.esc50_features(folder, rows, 40, 50, show=False)
    assert "\n" not in str(err.value) and not folder.exists()  # a damaged download is removed
