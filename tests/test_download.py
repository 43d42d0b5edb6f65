"""Downloads (magma_teach.data.download) against a local HTTP server: verify, extract safely, fail clearly."""

import hashlib
import io
import tarfile
import zipfile

import pytest

from magma_teach.data import download
from magma_teach.data.download import ChecksumError, DownloadError, Remote, UnsafeArchiveError

CSV = b"filename,label\na.wav,0\n"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _zip(path, members: dict):
    with zipfile.ZipFile(path, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return path


def _tar(path, members: dict, symlink: tuple | None = None):
    with tarfile.open(path, "w:gz") as handle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            handle.addfile(info)
    return path


def _everything_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_mirror_replaces_the_base_url(monkeypatch):
    remote = Remote("esc50", "https://example.org/archive/", "/abc.zip", known_hash="sha256:00")
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert remote.url == "https://example.org/archive/abc.zip"
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:9/m/")
    assert remote.url == "http://127.0.0.1:9/m/abc.zip"


def test_a_remote_must_pin_something():
    with pytest.raises(ValueError, match="known_hash or key_files"):
        Remote("esc50", "https://example.org", "a.zip")


def test_hash_matches_knows_md5_and_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert download.hash_matches(path, "md5:900150983cd24fb0d6963f7d28e17f72")
    assert download.hash_matches(path, _sha(b"abc"))
    assert download.hash_matches(path, hashlib.sha256(b"abc").hexdigest())  # bare hex = sha256
    assert not download.hash_matches(path, _sha(b"abd"))


@pytest.mark.parametrize("pin", ["archive", "key_files"])
def test_good_archive_is_extracted_verified_and_reused_offline(mirror, pin, monkeypatch):
    data = _zip(mirror / "good.zip", {"top/meta/data.csv": CSV, "top/audio/a.wav": b"RIFF"}).read_bytes()
    pins = ({"known_hash": _sha(data)} if pin == "archive" else {"key_files": {"top/meta/data.csv": _sha(CSV)}})
    remote = Remote("esc50", "https://unused.example", "good.zip", **pins)
    folder = download.fetch_folder(remote, progress=False)
    assert (folder / "top/meta/data.csv").read_bytes() == CSV
    assert folder.name == "good" and not (folder.parent / "good.zip").exists()  # archive removed after use
    assert [p.name for p in folder.parent.iterdir()] == ["good"]  # no temporary leftovers
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:1")  # now offline: the cached folder is reused
    assert download.fetch_folder(remote, progress=False) == folder


def test_tampered_archive_is_refused_and_removed(mirror, tmp_path):
    good = _zip(tmp_path / "good.zip", {"top/meta/data.csv": CSV}).read_bytes()
    _zip(mirror / "good.zip", {"top/meta/data.csv": b"filename,label\na.wav,1\n"})
    remote = Remote("esc50", "https://unused.example", "good.zip", known_hash=_sha(good))
    with pytest.raises(ChecksumError, match=r"^esc50: checksum mismatch for good\.zip") as err:
        download.fetch_folder(remote, progress=False)
    assert "\n" not in str(err.value)
    assert _everything_under(tmp_path / "cache") in ([], ["downloads", "downloads/esc50"])


def test_tampered_key_file_is_refused_and_removed(mirror, tmp_path):
    _zip(mirror / "good.zip", {"top/meta/data.csv": b"tampered\n", "top/x.wav": b"RIFF"})
    remote = Remote("esc50", "https://unused.example", "good.zip", key_files={"top/meta/data.csv": _sha(CSV)})
    with pytest.raises(ChecksumError, match=r"esc50: checksum mismatch for top/meta/data\.csv"):
        download.fetch_folder(remote, progress=False)
    assert _everything_under(tmp_path / "cache") == ["downloads", "downloads/esc50"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("member", ["../escaped.txt", "top/../../escaped.txt", "/tmp/absolute-escape.txt"])
def test_escaping_members_are_refused_and_nothing_escapes(mirror, tmp_path, kind, member):
    name = f"evil.{'zip' if kind == 'zip' else 'tar.gz'}"
    build = _zip if kind == "zip" else _tar
    data = build(mirror / name, {"top/ok.txt": b"ok", member: b"gotcha"}).read_bytes()
    remote = Remote("esc50", "https://unused.example", name, known_hash=_sha(data))
    with pytest.raises(UnsafeArchiveError, match=r"^esc50: refused to extract .*member .*escape"):
        download.fetch_folder(remote, progress=False)
    assert _everything_under(tmp_path / "cache") == ["downloads", "downloads/esc50"]
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "downloads" / "escaped.txt").exists()


def test_links_in_a_tar_are_refused(mirror, tmp_path):
    data = _tar(mirror / "link.tar.gz", {"top/ok.txt": b"ok"}, symlink=("top/link", "/etc/passwd")).read_bytes()
    remote = Remote("fleurs", "https://unused.example", "link.tar.gz", known_hash=_sha(data))
    with pytest.raises(UnsafeArchiveError, match="a link or device file"):
        download.fetch_folder(remote, progress=False)
    assert _everything_under(tmp_path / "cache") == ["downloads", "downloads/fleurs"]


def test_a_missing_file_is_an_http_error_naming_the_dataset(mirror):
    remote = Remote("recipes", "https://unused.example", "absent.zip", known_hash=_sha(b""))
    with pytest.raises(DownloadError, match=r"^recipes: download of .*absent\.zip failed with HTTP 404"):
        download.fetch_folder(remote, progress=False)


def test_no_network_is_one_clear_line_and_leaves_no_files(no_network):
    remote = Remote("fleurs", "https://unused.example", "x.tar.gz", known_hash=_sha(b""))
    with pytest.raises(DownloadError) as err:
        download.fetch_folder(remote, progress=False)
    message = str(err.value)
    assert message.startswith("fleurs: cannot download http://127.0.0.1:") and "\n" not in message
    assert "offline benchmark 'languages'" in message
    files = [p for p in no_network.rglob("*") if p.is_file()] if no_network.exists() else []
    assert files == []
