"""recipes (Yummly-28K, text → image) against a small Yummly-like archive on a local mirror: no internet."""

import hashlib
import io
import json
import struct
import sys
import zipfile
import zlib

import pytest
import torch

from magma_teach.data import download, recipes, registry
from magma_teach.data.download import ChecksumError, DownloadError, UnsafeArchiveError
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task

CUISINES = ["American", "Italian", "Mexican", "Chinese", "Indian", "French", "Thai", "Japanese", "Greek",
            "Spanish", "German", "Moroccan", "Irish", "Cuban", "Hawaiian", "Swedish"]
MULTI = {"cuisine": ["Italian", "American"], "course": ["Side Dishes", "Appetizers"]}  # unsorted on purpose
MULTI_LABEL = "American_Italian_Appetizers_Side Dishes"


def _specs() -> list[dict]:
    """209 recipes: 16 cuisines x 12 main dishes, 12 two-cuisine recipes, and two rare classes."""
    specs = [{"cuisine": [c], "course": ["Main Dishes"]} for c in CUISINES for _ in range(12)]
    specs += [dict(MULTI) for _ in range(12)]
    specs += [{"cuisine": ["Italian"], "course": ["Desserts"]} for _ in range(3)]  # 3 < 11: dropped
    specs += [{"cuisine": [], "course": ["Salads"]} for _ in range(2)]  # label "_Salads", dropped
    return specs


def _colour(n: int) -> tuple[int, int, int]:
    return (n * 37) % 256, (n * 91) % 256, (n * 13) % 256


def _jpeg(n: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), _colour(n)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _members(top: str = "Yummly28K/") -> dict[str, bytes]:
    members = {}
    for n, spec in enumerate(_specs(), start=1):
        record = {"name": f"Dish {n}", "ingredientLines": [f"{n} Cups Flour", "1 pinch salt"],
                  "attributes": {"cuisine": spec["cuisine"], "course": spec["course"]}}
        members[f"{top}metadata27638/meta{n:05d}.json"] = json.dumps(record).encode()
        members[f"{top}images27638/img{n:05d}.jpg"] = _jpeg(n)
    return members


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in _members().items():
            handle.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def served(mirror, archive_bytes, monkeypatch):
    """The archive on the mirror as Yummly28K.zip; returns its pinned checksum."""
    monkeypatch.setattr(recipes, "YUMMLY_ARCHIVE", "Yummly28K.zip")
    (mirror / "Yummly28K.zip").write_bytes(archive_bytes)
    return "sha256:" + hashlib.sha256(archive_bytes).hexdigest()


def _text(ds, i: int) -> str:
    ids = ds.source.x[i, : int(ds.source.lengths[i])]
    return "".join(chr(int(c) - 1) for c in ids)  # char_ids maps ASCII c to ord(c) + 1


def _files_under(folder):
    """Files left in ``folder``, apart from the cache's empty lock files (kept on purpose, see cache.py)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_good_archive_loads_with_the_authors_labels(served, tmp_path):
    ds = registry.load("recipes", preset="quick", progress=False, archive_sha256=served)
    assert MULTI_LABEL in ds.class_names and "Italian_Main Dishes" in ds.class_names
    assert "Italian_Desserts" not in ds.class_names and "_Salads" not in ds.class_names  # rare: dropped
    assert ds.num_classes == 17 and len(ds.source) == 17 * 12
    assert ds.target.x.shape == (17 * 12, 3, 32, 32) and ds.target.x.dtype == torch.float32
    assert 0.0 <= float(ds.target.x.min()) and float(ds.target.x.max()) <= 1.0
    # Hand check: recipe 200 is a two-cuisine recipe (after 16 x 12 single ones).
    j = ds.info["recipe_ids"].index("00200")
    assert ds.class_names[int(ds.source.labels[j])] == MULTI_LABEL
    assert _text(ds, j) == "200 cups flour, 1 pinch salt"
    for i, j in ds.pairs[::13].tolist():  # text and photo of one pair come from the same recipe
        n = int(ds.info["recipe_ids"][i])
        assert _text(ds, i).startswith(f"{n} cups")
        mean = ds.target.x[j].mean(dim=(1, 2)) * 255
        assert torch.allclose(mean, torch.tensor(_colour(n), dtype=torch.float32), atol=6)
    # Clusters: the cuisine part of the label; the two-cuisine class has its own.
    italian = ds.clusters[ds.class_names.index("Italian_Main Dishes")]
    assert ds.clusters[ds.class_names.index(MULTI_LABEL)] != italian
    assert len(set(ds.clusters.tolist())) == 17
    gen = torch.Generator().manual_seed(0)
    task = sample_classification_task(ds.target, ds.eval_tasks[0], 5, 5, 5, gen, fixed_concepts=True)
    assert task.support[0].shape == (25, 3, 32, 32) and task.query[0].shape == (25, 3, 32, 32)
    align = sample_alignment_task(ds, ds.splits["meta_train"], 5, 4, gen)
    assert align.source[0].shape == (20, 400) and align.target[0].shape == (20, 3, 32, 32)
    assert "Min et al." in ds.info["attribution"] and ds.info["label_mode"] == "authors"


def test_cuisine_labels_and_the_per_class_cap(served):
    ds = registry.load("recipes", preset="quick", progress=False, archive_sha256=served, label="cuisine",
                       per_class=12, image_size=16)
    assert ds.class_names == sorted(CUISINES) and ds.info["label_mode"] == "cuisine"
    assert torch.bincount(ds.target.labels).tolist() == [12] * 16  # Italian had 15: capped (seeded)
    assert "00200" not in ds.info["recipe_ids"]  # two cuisines: no class in this mode
    assert ds.clusters.tolist() == list(range(16)) and ds.target.x.shape[-1] == 16


def test_tampered_archive_is_refused_and_removed(served, mirror, tmp_path):
    data = bytearray((mirror / "Yummly28K.zip").read_bytes())
    data[100] ^= 0xFF
    (mirror / "Yummly28K.zip").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="^recipes: .*checksum") as err:
        registry.load("recipes", progress=False, archive_sha256=served)
    assert "\n" not in str(err.value)
    assert _files_under(tmp_path / "cache" / "downloads") == []  # only empty folders may remain


def test_no_network_names_the_offline_benchmark(no_network):
    with pytest.raises(DownloadError, match="^recipes: .*'numbers'") as err:
        registry.load("recipes", progress=False, archive_sha256="sha256:" + "0" * 64)
    assert "\n" not in str(err.value)


def test_without_a_pinned_checksum_it_refuses_but_a_folder_works(no_network, tmp_path):
    with pytest.raises(DownloadError, match="no published checksum is pinned") as err:
        recipes.download(recipes.make_config())
    assert "\n" not in str(err.value) and "folder=" in str(err.value)
    folder = tmp_path / "extracted"  # no Yummly28K/ top folder this time
    for name, data in _members(top="").items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "images27638/img00001.jpg").write_bytes(b"not a jpeg")  # an unreadable photo is left out
    ds = registry.load("recipes", progress=False, folder=folder)
    assert ds.num_classes == 17 and recipes.download(ds.info["config"]) == folder
    assert ds.info["n_skipped"] == 1 and "00001" not in ds.info["recipe_ids"]
    assert int((ds.target.labels == ds.class_names.index("American_Main Dishes")).sum()) == 11


def test_a_folder_that_is_not_yummly_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metadata27638/"):
        recipes.download(recipes.make_config(folder=str(tmp_path)))


def test_a_rar_without_rarfile_is_kept_for_manual_extraction(mirror, monkeypatch, tmp_path):
    fake = b"Rar!\x1a\x07\x01\x00" + b"\x00" * 64  # RAR 5 magic: dispatched to the RAR path
    (mirror / "Yummly28K.rar").write_bytes(fake)
    monkeypatch.setitem(sys.modules, "rarfile", None)  # as if rarfile were not installed
    pin = "sha256:" + hashlib.sha256(fake).hexdigest()
    with pytest.raises(recipes.ExtractToolError, match="rarfile.*folder=") as err:
        recipes.download(recipes.make_config(archive_sha256=pin), progress=False)
    assert "\n" not in str(err.value)
    kept = tmp_path / "cache" / "downloads" / "recipes" / "Yummly28K.rar"
    assert _files_under(kept.parent) == [kept]  # verified archive stays; no partial folder


def _rar_block(head_type: int, flags: int, body: bytes) -> bytes:
    """One RAR 4 block: CRC16 (low half of crc32 over the rest), type, flags, size, body."""
    rest = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def _rar4(members: dict[str, bytes]) -> bytes:
    """A RAR 4 archive of *stored* (uncompressed) files: rarfile reads those without unrar."""
    out = b"Rar!\x1a\x07\x00" + _rar_block(0x73, 0, bytes(6))  # marker, main header
    dos_time = (40 << 25) | (1 << 21) | (1 << 16)  # 2020-01-01
    for name, data in members.items():
        raw = name.encode()
        # pack size, size, host OS (3 = Unix: '/' separators), CRC, time, version 2.9, method 0x30 = store
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), dos_time, 29, 0x30,
                           len(raw), 0o100644) + raw
        out += _rar_block(0x74, 0x8000, body) + data  # 0x8000: a data area follows the header
    return out + _rar_block(0x7B, 0x4000, b"")  # end of archive


@pytest.fixture
def rar_served(mirror, monkeypatch):
    """Serve a RAR built from ``members`` as Yummly28K.rar; returns (pin, archive path in the cache)."""
    rarfile = pytest.importorskip("rarfile")

    def serve(members: dict[str, bytes], tool: bool = True):
        data = _rar4(members)
        (mirror / "Yummly28K.rar").write_bytes(data)
        def no_tool():
            raise rarfile.RarCannotExec("Cannot find working tool")

        # Stored members need no external tool, so "a tool is there" can be pretended either way.
        monkeypatch.setattr(rarfile, "tool_setup", (lambda: None) if tool else no_tool)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    return serve


def test_a_rar_archive_is_extracted_and_read(rar_served, tmp_path):
    pin = rar_served(_members())
    folder = recipes.download(recipes.make_config(archive_sha256=pin), progress=False)
    assert folder == tmp_path / "cache" / "downloads" / "recipes" / "Yummly28K"
    assert not (folder.parent / "Yummly28K.rar").exists()  # removed after a good extraction
    ds = registry.load("recipes", progress=False, archive_sha256=pin)
    assert ds.num_classes == 17


def test_an_unsafe_rar_is_refused_and_removed(rar_served, tmp_path):
    pin = rar_served({"Yummly28K/metadata27638/meta00001.json": b"{}", "../evil.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match="^recipes: refused .*'../evil.txt'"):
        recipes.download(recipes.make_config(archive_sha256=pin), progress=False)
    assert _files_under(tmp_path / "cache") == [] and not (tmp_path / "evil.txt").exists()


def test_a_rar_without_a_tool_is_kept(rar_served, tmp_path):
    pin = rar_served(_members(), tool=False)
    with pytest.raises(recipes.ExtractToolError, match="no RAR tool found .*folder="):
        recipes.download(recipes.make_config(archive_sha256=pin), progress=False)
    kept = tmp_path / "cache" / "downloads" / "recipes" / "Yummly28K.rar"
    assert _files_under(kept.parent) == [kept]


def test_unsafe_rar_member_names_are_refused():
    recipes.check_member_names(["Yummly28K/metadata27638/meta00001.json"], "Yummly28K.rar")
    for bad in ("../x", "/abs", "Yummly28K/../../x"):
        with pytest.raises(UnsafeArchiveError, match="^recipes: refused"):
            recipes.check_member_names([bad], "Yummly28K.rar")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="label"):
        recipes.make_config(label="course")
    with pytest.raises(ValueError, match="archive_sha256"):
        recipes.make_config(archive_sha256="abc")
    with pytest.raises(ValueError, match="unknown setting"):
        recipes.make_config(foo=1)
    assert recipes.make_config("full")["image_size"] == 64
    assert download.OFFLINE_ALTERNATIVE["recipes"] == "numbers"


def test_the_text_image_experiment_runs_on_the_recipes(served):
    """``run text-image --data full`` end to end on the fixture archive (tiny preset: seconds)."""
    from magma_teach.experiments import run

    result = run("text-image", preset="tiny", data="full", device="cpu", progress=False,
                 data_settings={"archive_sha256": served})  # the CLI's --set archive_sha256=...
    assert result.data == "full" and set(result.rows["shots"]) == {1, 5}
    assert len(result.rows) == 6 * 2 and result.rows["mean"].between(0, 100).all()
    oracle = result.rows[result.rows["approach"] == "Oracle"].iloc[0]
    assert oracle["target_labels"] == oracle["target_samples"] > 0
    from magma_teach.paper import NOTE_FULL
    from magma_teach.report import format_result

    text = format_result(result)  # our table beside the poster's, with the full-data note
    assert "Beside the paper" in text and "51.1 ± 2.1" not in text.split("Beside")[0] and NOTE_FULL in text
