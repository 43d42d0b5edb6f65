"""Downloads (magma_teach.data.download) against a local HTTP server: verify, extract safely, fail clearly."""

import hashlib
import io
import os
import stat
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


def _tar(path, members: dict, symlink: tuple | None = None, mode: str = "w:gz"):
    with tarfile.open(path, mode) as handle:
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
    """Every path under ``folder`` except the lock files (``.locks/``, which stay by design: see cache)."""
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []
    return [p for p in paths if ".locks" not in p.split("/")]


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
    assert [p.name for p in files] in ([], ["fleurs.lock"])  # at most the (empty) lock of the folder


# --- archive formats: the name and the first bytes must agree ---------------------------------------



def _zip_bytes(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def _tar_ending_in_zip(path, mode="w"):
    """A tar whose *last* member is a zip: ``zipfile.is_zipfile`` says yes to it (it reads the end)."""
    inner = _zip_bytes({"inside/secret.txt": b"from the zip"})
    return _tar(path, {"top/meta/data.csv": CSV, "top/bundle.zip": inner}, mode=mode), inner


RAR4_START = b"Rar!\x1a\x07\x00" + bytes(32)  # the first bytes of a RAR 4 archive


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _gzip_of_text(path):
    import gzip

    path.write_bytes(gzip.compress(b"just text, no tar header here\n" * 40))
    return path


# (file name, how to build it, expected format)
GOOD_ARCHIVES = [
    ("a.tar", lambda p: _tar_ending_in_zip(p, "w")[0], "tar"),
    ("a.tar.gz", lambda p: _tar_ending_in_zip(p, "w:gz")[0], "tar.gz"),
    ("a.TGZ", lambda p: _tar(p, {"x": b"1"}, mode="w:gz"), "tar.gz"),
    ("a.tar.bz2", lambda p: _tar(p, {"x": b"1"}, mode="w:bz2"), "tar.bz2"),
    ("a.tbz2", lambda p: _tar(p, {"x": b"1"}, mode="w:bz2"), "tar.bz2"),
    ("a.tar.xz", lambda p: _tar(p, {"x": b"1"}, mode="w:xz"), "tar.xz"),
    ("a.txz", lambda p: _tar(p, {"x": b"1"}, mode="w:xz"), "tar.xz"),
    ("a.zip", lambda p: _zip(p, {"x": b"1"}), "zip"),
    ("empty.zip", lambda p: _zip(p, {}), "zip"),
    ("empty.tar", lambda p: _tar(p, {}, mode="w"), "tar"),
    ("a.rar", lambda p: _write(p, RAR4_START), "rar"),
    ("no-ending", lambda p: _tar(p, {"x": b"1"}, mode="w"), "tar"),  # no promise in the name: bytes decide
    ("no-ending-zip", lambda p: _zip(p, {"x": b"1"}), "zip"),
]


@pytest.mark.parametrize("name, build, expected", GOOD_ARCHIVES, ids=[row[0] for row in GOOD_ARCHIVES])
def test_archive_format_comes_from_name_and_bytes(tmp_path, name, build, expected):
    assert download.archive_format(build(tmp_path / name), "esc50") == expected


# (file name, how to build it, what the one-line message must say)
BAD_ARCHIVES = [
    ("zip-named.tar", lambda p: _zip(p, {"x": b"1"}), "named like a tar archive but its bytes are a zip archive"),
    ("zip-named.tar.gz", lambda p: _zip(p, {"x": b"1"}), "named like a tar.gz archive but its bytes are a zip"),
    ("plain-tar-named.tgz", lambda p: _tar(p, {"x": b"1"}, mode="w"), "like a tar.gz archive but its bytes are a tar "),
    ("tgz-named.tar", lambda p: _tar(p, {"x": b"1"}), "like a tar archive but its bytes are a tar.gz archive"),
    ("tgz-named.zip", lambda p: _tar(p, {"x": b"1"}), "like a zip archive but its bytes are a tar.gz archive"),
    ("bz2-named.tar.xz", lambda p: _tar(p, {"x": b"1"}, mode="w:bz2"),
     "like a tar.xz archive but its bytes are a tar.bz2"),
    ("tar-ending-in-zip.zip", lambda p: _tar_ending_in_zip(p)[0], "like a zip archive but its bytes are a tar archive"),
    ("rar-named.zip", lambda p: _write(p, RAR4_START), "like a zip archive but its bytes are a rar archive"),
    ("zip-named.rar", lambda p: _zip(p, {"x": b"1"}), "like a rar archive but its bytes are a zip archive"),
    ("text.tar.gz", _gzip_of_text, "is gzip data without a tar inside; expected tar.gz"),
    ("noise.zip", lambda p: _write(p, bytes(range(7, 256)) * 4), "is no known archive format"),
    ("noise", lambda p: _write(p, bytes(range(7, 256)) * 4), "expected zip, tar, tar.gz, tar.bz2, tar.xz or rar"),
    ("empty.zip", lambda p: _write(p, b""), "is no known archive format"),
    ("seven.zip", lambda p: _write(p, b"7z\xbc\xaf\x27\x1c" + bytes(40)), "is a 7-Zip archive (not supported)"),
]


@pytest.mark.parametrize("name, build, fragment", BAD_ARCHIVES, ids=[row[0] for row in BAD_ARCHIVES])
def test_mislabelled_or_unknown_archives_are_one_line_errors(tmp_path, name, build, fragment):
    archive = build(tmp_path / name)
    with pytest.raises(download.ArchiveFormatError) as err:
        download.safe_extract(archive, tmp_path / "out", "esc50")
    message = str(err.value)
    assert message.startswith(f"esc50: {name} ") and fragment in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize("mode, name", [("w", "bundle.tar"), ("w:gz", "bundle.tar.gz"), ("w:gz", "bundle.tgz")])
def test_a_tar_whose_last_member_is_a_zip_extracts_as_a_tar(tmp_path, mode, name):
    archive, inner = _tar_ending_in_zip(tmp_path / name, mode)
    assert zipfile.is_zipfile(archive) == (mode == "w")  # the trap: the end of a plain tar is the zip's
    download.safe_extract(archive, tmp_path / "out", "esc50")
    assert _everything_under(tmp_path / "out") == ["top", "top/bundle.zip", "top/meta", "top/meta/data.csv"]
    assert (tmp_path / "out/top/meta/data.csv").read_bytes() == CSV
    assert (tmp_path / "out/top/bundle.zip").read_bytes() == inner  # kept whole, not opened


def test_safe_extract_leaves_rar_to_rarfile(tmp_path):
    with pytest.raises(download.ArchiveFormatError,
                       match=r"^esc50: a\.rar is a RAR archive; safe_extract reads zip and tar only$"):
        download.safe_extract(_write(tmp_path / "a.rar", RAR4_START), tmp_path / "out", "esc50")


def test_fetch_folder_extracts_a_tar_ending_in_a_zip(mirror):
    data = _tar_ending_in_zip(mirror / "bundle.tar")[0].read_bytes()
    remote = Remote("fleurs", "https://unused.example", "bundle.tar", known_hash=_sha(data))
    folder = download.fetch_folder(remote, progress=False)
    assert folder.name == "bundle" and (folder / "top/meta/data.csv").read_bytes() == CSV
    assert (folder / "top/bundle.zip").is_file() and not (folder / "inside").exists()


def test_fetch_folder_refuses_a_mislabelled_archive_and_removes_it(mirror, tmp_path):
    data = _zip(mirror / "data.tar.gz", {"top/meta/data.csv": CSV}).read_bytes()
    remote = Remote("fleurs", "https://unused.example", "data.tar.gz", known_hash=_sha(data))
    with pytest.raises(download.ArchiveFormatError,
                       match=r"^fleurs: data\.tar\.gz is named like a tar\.gz archive but its bytes are a zip archive"):
        download.fetch_folder(remote, progress=False)
    assert _everything_under(tmp_path / "cache") == ["downloads", "downloads/fleurs"]


@pytest.mark.parametrize("mode, name", [("w", "cut.tar"), ("w:gz", "cut.tar.gz"), ("w:bz2", "cut.tar.bz2"),
                                        ("w:xz", "cut.tar.xz")])
def test_a_cut_short_archive_is_one_line_and_removed(mirror, tmp_path, mode, name):
    whole = _tar(tmp_path / name, {f"top/f{i}": bytes(range(256)) * 200 + bytes([i]) for i in range(4)},
                 mode=mode).read_bytes()
    data = _write(mirror / name, whole[: len(whole) // 2]).read_bytes()
    remote = Remote("fleurs", "https://unused.example", name, known_hash=_sha(data))
    with pytest.raises(DownloadError) as err:
        download.fetch_folder(remote, progress=False)
    assert str(err.value).startswith(f"fleurs: {name} ") and "\n" not in str(err.value)
    assert _everything_under(tmp_path / "cache") == ["downloads", "downloads/fleurs"]


@pytest.mark.parametrize("name, stem", [("a.tar", "a"), ("a.tar.gz", "a"), ("a.TGZ", "a"), ("a.tar.bz2", "a"),
                                        ("a.tbz2", "a"), ("a.tar.xz", "a"), ("a.txz", "a"), ("a.zip", "a"),
                                        ("a.rar", "a"), ("v1.2.tar.gz", "v1.2"), ("plain", "plain")])
def test_the_extracted_folder_is_named_without_the_archive_ending(name, stem):
    assert download._stem(name) == stem


def test_a_complete_folder_is_read_without_the_lock(mirror, monkeypatch):
    data = _zip(mirror / "good.zip", {"top/meta/data.csv": CSV}).read_bytes()
    remote = Remote("esc50", "https://unused.example", "good.zip", known_hash=_sha(data))
    folder = download.fetch_folder(remote, progress=False)

    def no_lock(target):
        raise AssertionError(f"locked {target} to read a complete folder")

    monkeypatch.setattr(download, "cache_lock", no_lock)  # as in a read-only shared cache
    assert download.fetch_folder(remote, progress=False) == folder


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_downloads_and_extracted_folders_follow_the_umask(mirror, umask, file_mode, folder_mode):
    """pooch's NamedTemporaryFile and tempfile.mkdtemp make owner-only files; the cache must not."""
    archive = _zip(mirror / "perm.zip", {"top/meta/data.csv": CSV})
    data = archive.read_bytes()
    old = os.umask(umask)
    try:
        kept = download.fetch_folder(Remote("esc50", "https://unused.example", "perm.zip", known_hash=_sha(data)),
                                     progress=False, keep_archive=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(kept.stat().st_mode) == folder_mode
    assert stat.S_IMODE((kept.parent / "perm.zip").stat().st_mode) == file_mode
