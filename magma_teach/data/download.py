"""Downloads for the full-data tier: verified, atomic, mirrorable, and clear when offline.

Every file the full-data loaders fetch is described by a :class:`Remote`: which dataset it belongs to,
its base URL and path, and the checksum it must have. :func:`fetch_folder` then does, in order,

1. **download** with ``pooch`` (to a temporary file in the cache, hash-checked, renamed only when it
   matches; a mismatch deletes the temporary file), unless a verified copy is already there;
2. **extract** an archive member by member into a temporary folder, refusing members with absolute
   paths, ``..`` parts, links or device files — before writing anything. The format comes from the
   file name *and* its first bytes (:func:`archive_format`), which must agree: a ``.tar`` whose last
   member is a zip is a tar (the zip check of ``zipfile.is_zipfile`` reads the end of a file and
   would be fooled);
3. **verify** the key extracted files against their checksums, for archives that are not byte-stable
   (GitHub builds ``archive/<commit>.zip`` on the fly, so only its contents can be pinned);
4. **rename** the temporary folder to its final name: a folder in the cache is complete or absent.

Any failure removes what it wrote and raises a one-line error that names the dataset:
:class:`ChecksumError` (wrong bytes), :class:`ArchiveFormatError` (name and bytes disagree, or no
known archive format), :class:`UnsafeArchiveError` (a member would escape the cache) or
:class:`DownloadError` (no network, HTTP error), which says which offline benchmark works instead.

Two processes may fetch the same dataset at once: each dataset folder has a lock
(:func:`~magma_teach.data.cache.cache_lock` of ``<cache>/downloads/<dataset>``, held by
:func:`fetch`, :func:`staging_folder` and for the whole of :func:`fetch_folder` once it has to
write), so the second waits and then reuses the first one's result. Reading a complete, verified
folder or file takes no lock (a read-only shared cache works). The lock dies with its process, even
on ``SIGKILL``; the next holder removes what a killed process left (pooch's ``tmpXXXXXXXX`` download
files, ``.partial`` staging folders).

``MAGMA_TEACH_MIRROR`` replaces the base URL of every download: with it set to ``http://host/data``,
``Remote("esc50", "https://github.com/karolpiczak/ESC-50/archive", "<commit>.zip", ...)`` is fetched
from ``http://host/data/<commit>.zip``. A mirror therefore holds each file at its ``path``.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from magma_teach.data.cache import cache_lock, cache_root, follow_umask

MIRROR_ENV = "MAGMA_TEACH_MIRROR"

# What to use instead when a dataset cannot be downloaded (named in the error).
OFFLINE_ALTERNATIVE = {"esc50": "numbers", "cifar10": "numbers", "cifar100": "numbers", "cifar": "numbers",
                       "fleurs": "languages", "recipes": "numbers"}


class DownloadError(RuntimeError):
    """The data could not be fetched (no network, HTTP error). The message is one line."""


class ChecksumError(DownloadError):
    """A downloaded or extracted file does not have the expected checksum; it was removed."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the cache; nothing was extracted."""


class ArchiveFormatError(DownloadError):
    """An archive's name and first bytes name different formats, or no format this module knows."""


@dataclass(frozen=True)
class Remote:
    """One file to download.

    ``known_hash`` is ``"sha256:<hex>"`` (or ``"md5:<hex>"``) of the file itself where it is
    byte-stable, else ``None``; then ``key_files`` (path inside the archive → hash) must pin the
    extracted contents instead. ``filename`` is the name in the cache (default: last part of ``path``).
    """

    dataset: str
    base_url: str
    path: str
    known_hash: str | None = None
    key_files: dict[str, str] = field(default_factory=dict)
    filename: str | None = None

    def __post_init__(self):
        if self.known_hash is None and not self.key_files:
            raise ValueError(f"{self.dataset}: a Remote needs known_hash or key_files, or nothing is verified")

    @property
    def url(self) -> str:
        """The address to fetch: ``$MAGMA_TEACH_MIRROR`` (if set) or ``base_url``, then ``path``."""
        base = os.environ.get(MIRROR_ENV) or self.base_url
        return f"{base.rstrip('/')}/{self.path.lstrip('/')}"

    @property
    def name(self) -> str:
        return self.filename or PurePosixPath(self.path).name


def downloads_dir(dataset: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where a dataset's downloads live: ``<cache>/downloads/<dataset>``."""
    return cache_root(cache_dir) / "downloads" / dataset


def offline_hint(dataset: str) -> str:
    alternative = OFFLINE_ALTERNATIVE.get(dataset, "numbers")
    return (f"without internet use the offline benchmark {alternative!r} "
            f"(python -m magma_teach data {alternative})")


# --- checksums --------------------------------------------------------------------------------------

def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_matches(path: str | os.PathLike, known_hash: str) -> bool:
    """Whether ``path`` has ``known_hash`` (``"sha256:<hex>"``, ``"md5:<hex>"``, or bare sha256 hex)."""
    algorithm, _, expected = known_hash.rpartition(":")
    return file_hash(path, algorithm or "sha256") == expected.lower()


def verify_files(folder: Path, key_files: dict[str, str], dataset: str) -> None:
    """Raise :class:`ChecksumError` unless every ``folder/relative`` exists with its hash."""
    for relative, known in key_files.items():
        path = folder / relative
        if not path.is_file():
            raise ChecksumError(f"{dataset}: expected file {relative} is missing from the download; removed it")
        if not hash_matches(path, known):
            raise ChecksumError(f"{dataset}: checksum mismatch for {relative} (not the expected data); "
                                f"removed the download")


# --- download ---------------------------------------------------------------------------------------

def fetch(remote: Remote, folder: Path, progress: bool = True) -> Path:
    """Download ``remote`` into ``folder`` (hash-checked by pooch) and return the file's path.

    A verified copy already in ``folder`` is reused without touching the network.
    """
    import pooch

    pooch.get_logger().setLevel("WARNING")
    existing = folder / remote.name
    if remote.known_hash and existing.is_file() and hash_matches(existing, remote.known_hash):
        return existing  # no lock needed to read a verified file: a read-only shared cache works too
    folder.mkdir(parents=True, exist_ok=True)
    with cache_lock(folder):  # one download into a folder at a time, so a leftover temp file is stale
        _remove_stale_downloads(folder)
        return _retrieve(remote, folder, progress)


def _retrieve(remote: Remote, folder: Path, progress: bool) -> Path:
    """``pooch.retrieve`` with its failures turned into one-line errors that name the dataset."""
    import pooch
    import requests

    try:
        path = pooch.retrieve(remote.url, known_hash=remote.known_hash, fname=remote.name, path=folder,
                              progressbar=progress)
    except ValueError as err:  # pooch: "... hash of downloaded file ... does not match the known hash"
        if "hash" not in str(err).lower():
            raise
        (folder / remote.name).unlink(missing_ok=True)
        raise ChecksumError(f"{remote.dataset}: checksum mismatch for {remote.name} downloaded from "
                            f"{remote.url}; the file was removed") from None
    except requests.exceptions.HTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise DownloadError(f"{remote.dataset}: download of {remote.url} failed with HTTP {status}; "
                            f"{offline_hint(remote.dataset)}") from None
    except (requests.exceptions.RequestException, OSError) as err:
        reason = type(err).__name__
        raise DownloadError(f"{remote.dataset}: cannot download {remote.url} ({reason}: no network?); "
                            f"{offline_hint(remote.dataset)}") from None
    follow_umask(path)  # pooch writes through a NamedTemporaryFile: owner-only otherwise
    return Path(path)


# pooch downloads to tempfile.NamedTemporaryFile(dir=folder): "tmp" + 8 characters, no suffix.
_POOCH_TEMP = re.compile(r"tmp[a-z0-9_]{8}")


def _remove_stale_downloads(folder: Path) -> None:
    """Delete pooch temporary files in ``folder``: called under its lock, so their writer is dead."""
    for path in folder.iterdir():
        if _POOCH_TEMP.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


# --- archive formats --------------------------------------------------------------------------------

# Name endings (lower case) and the format each promises. Compressed tars are tars first.
NAME_FORMATS = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".tar.bz2": "tar.bz2",
                ".tbz2": "tar.bz2", ".tbz": "tar.bz2", ".tar.xz": "tar.xz", ".txz": "tar.xz",
                ".zip": "zip", ".rar": "rar"}
# The first bytes of each format; "tar" has none of its own (see _is_tar_header).
_MAGIC = [(b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
          (b"Rar!\x1a\x07\x00", "rar"), (b"Rar!\x1a\x07\x01\x00", "rar"),
          (b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"),
          (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x28\xb5\x2f\xfd", "zstd")]
_DECOMPRESS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar.xz": "r:xz"}
# What reading a damaged zip or (compressed) tar raises; fetch_folder turns these into ChecksumError.
UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, lzma.LZMAError, zlib.error)


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` starts with a tar header whose checksum is right (any tar dialect), or is the
    all-zero end-of-archive block of an empty tar."""
    if len(block) >= 512 and not any(block[:512]):
        return True
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
        return True
    except (tarfile.HeaderError, ValueError):
        return False


def _bytes_format(path: Path) -> str:
    """The format the first bytes of ``path`` show: a key of ``TAR_MODES``, ``"zip"``, ``"rar"``, or a
    key of ``_NOT_READ`` (a compression with no tar inside, an unsupported format, ``"unknown"``)."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    kind = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if kind is None:
        return "tar" if _is_tar_header(head) else "unknown"
    if kind in _DECOMPRESS:
        try:
            with _DECOMPRESS[kind](path, "rb") as inner:
                return f"tar.{kind}" if _is_tar_header(inner.read(512)) else kind
        except (OSError, EOFError, lzma.LZMAError):
            return f"tar.{kind}"  # damaged before the first header: extraction reports it as unreadable
    return kind


_NOT_READ = {"unknown": "no known archive format (not an archive, or cut short)",
             "gz": "gzip data without a tar inside", "bz2": "bzip2 data without a tar inside",
             "xz": "xz data without a tar inside", "7z": "a 7-Zip archive (not supported)",
             "zstd": "zstd data (not supported)"}


def _promised_format(name: str) -> tuple[str, str] | None:
    """``(ending, format)`` that the name ``name`` promises (``NAME_FORMATS``, any case), else ``None``."""
    for ending in sorted(NAME_FORMATS, key=len, reverse=True):
        if name.lower().endswith(ending):
            return ending, NAME_FORMATS[ending]
    return None


def archive_format(archive: str | os.PathLike, dataset: str, name: str | None = None) -> str:
    """The format of ``archive``: ``"zip"``, ``"tar"``, ``"tar.gz"``, ``"tar.bz2"``, ``"tar.xz"`` or ``"rar"``.

    It is read from the first bytes (zip ``PK\\x03\\x04``, RAR ``Rar!``, gzip / bzip2 / xz with a tar
    header inside, or a tar header with a valid checksum) and must agree with the name's ending
    (``name``, default the file's name; see ``NAME_FORMATS``) when it has a known one. Raises a one-line
    :class:`ArchiveFormatError` naming ``dataset`` when they disagree (a ``.tar.gz`` that holds a zip)
    or when the bytes are no archive this module reads.
    """
    archive = Path(archive)
    name = name or archive.name
    promised = (_promised_format(name) or (None, None))[1]
    found = _bytes_format(archive)
    if found in _NOT_READ:
        raise ArchiveFormatError(f"{dataset}: {name} is {_NOT_READ[found]}; expected "
                                 f"{promised or 'zip, tar, tar.gz, tar.bz2, tar.xz or rar'}")
    if promised is not None and found != promised:
        raise ArchiveFormatError(f"{dataset}: {name} is named like a {promised} archive but its bytes are "
                                 f"a {found} archive; refusing to guess which is right")
    return found


# --- safe extraction --------------------------------------------------------------------------------

def unsafe_reason(name: str) -> str | None:
    """Why an archive member name is unsafe to extract, or ``None`` when it stays inside the target."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a '..' part"
    return None


def refuse_unsafe_members(members: list[tuple[str, str | None]], archive_name: str, dataset: str) -> None:
    """Raise :class:`UnsafeArchiveError` for the first ``(name, problem)`` member that is unsafe: a name
    :func:`unsafe_reason` rejects, or a ``problem`` the archive format found (e.g. a link)."""
    for name, problem in members:
        reason = unsafe_reason(name) or problem
        if reason:
            raise UnsafeArchiveError(f"{dataset}: refused to extract {archive_name}: member {name!r} has "
                                     f"{reason}; removed the archive")


def safe_extract(archive: Path, destination: Path, dataset: str, name: str | None = None) -> None:
    """Extract a zip or tar archive into ``destination`` once every member passed
    :func:`refuse_unsafe_members`.

    The format is :func:`archive_format` of the file (``name`` replaces the file's name there), and
    the archive is opened as exactly that format, never guessed again. Raises
    :class:`ArchiveFormatError` (name and bytes disagree, unknown format, or a RAR: extract those with
    ``rarfile``, as :mod:`magma_teach.data.recipes` does), :class:`UnsafeArchiveError`, or one of
    ``UNREADABLE`` for a damaged archive; nothing is written before the checks pass.
    """
    fmt = archive_format(archive, dataset, name)
    if fmt == "rar":
        raise ArchiveFormatError(f"{dataset}: {name or archive.name} is a RAR archive; safe_extract reads "
                                 f"zip and tar only")
    if fmt == "zip":
        with zipfile.ZipFile(archive) as handle:
            refuse_unsafe_members([(info.filename, None) for info in handle.infolist()], archive.name, dataset)
            handle.extractall(destination)
        return
    with tarfile.open(archive, mode=TAR_MODES[fmt]) as handle:
        refuse_unsafe_members([(m.name, None if (m.isfile() or m.isdir()) else "a link or device file")
                               for m in handle.getmembers()], archive.name, dataset)
        # The "data" filter (Python >= 3.10.12) is a second guard on top of the member check.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        handle.extractall(destination, **extra)


@contextmanager
def staging_folder(final: Path):
    """A temporary folder beside ``final``; renamed to ``final`` on success, deleted on any error.

    Held under the lock of ``final``'s folder (:func:`~magma_teach.data.cache.cache_lock`), so any
    ``.<final name>.*.partial`` folder found there is a killed process's leftover and is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(final.parent):
        for stale in final.parent.glob(f".{glob.escape(final.name)}.*.partial"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
        try:
            follow_umask(staging, directory=True)
            yield staging
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def fetch_folder(remote: Remote, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                 keep_archive: bool = False) -> Path:
    """Download, check, safely extract and verify an archive; return the extracted folder.

    The folder is ``<cache>/downloads/<dataset>/<archive name without extension>``. A folder that
    exists and passes the key-file check is returned at once (no network). On any failure the
    archive and the partial folder are removed and a one-line :class:`DownloadError` is raised.
    All of it happens under the dataset folder's lock: a second process fetching the same dataset
    waits, then finds the folder complete.
    """
    root = downloads_dir(remote.dataset, cache_dir)
    final = root / _stem(remote.name)
    if final.is_dir():  # a complete folder is never removed while it verifies, so no lock is needed
        try:
            verify_files(final, remote.key_files, remote.dataset)
            return final
        except ChecksumError:
            pass  # repaired below, under the lock
    root.mkdir(parents=True, exist_ok=True)
    with cache_lock(root):
        return _fetch_folder_locked(remote, final, progress, keep_archive)


def _fetch_folder_locked(remote: Remote, final: Path, progress: bool, keep_archive: bool) -> Path:
    root = final.parent
    _remove_stale_downloads(root)
    if final.is_dir():  # again: another process may have finished it while this one waited
        try:
            verify_files(final, remote.key_files, remote.dataset)
            return final
        except ChecksumError:
            shutil.rmtree(final)  # damaged since it was extracted: fetch it again
    archive = fetch(remote, root, progress)
    try:
        with staging_folder(final) as staging:
            safe_extract(archive, staging, remote.dataset)
            verify_files(staging, remote.key_files, remote.dataset)
    except (DownloadError, *UNREADABLE) as err:
        archive.unlink(missing_ok=True)
        if isinstance(err, DownloadError):
            raise
        raise ChecksumError(f"{remote.dataset}: {archive.name} is not a readable archive "
                            f"({type(err).__name__}); removed it") from None
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return final


def fetch_file(remote: Remote, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download one (non-archive) file, verified by its ``known_hash``; return its path."""
    if remote.known_hash is None:
        raise ValueError(f"{remote.dataset}: fetch_file needs the file's known_hash")
    return fetch(remote, downloads_dir(remote.dataset, cache_dir), progress)


def _stem(name: str) -> str:
    """``name`` without its archive ending (any of ``NAME_FORMATS``, any case)."""
    promised = _promised_format(name)
    return name[: -len(promised[0])] if promised else name
