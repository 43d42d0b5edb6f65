"""Downloads for the full-data tier: verified, atomic, mirrorable, and clear when offline.

Every file the full-data loaders fetch is described by a :class:`Remote`: which dataset it belongs to,
its base URL and path, and the checksum it must have. :func:`fetch_folder` then does, in order,

1. **download** with ``pooch`` (to a temporary file in the cache, hash-checked, renamed only when it
   matches; a mismatch deletes the temporary file), unless a verified copy is already there;
2. **extract** an archive member by member into a temporary folder, refusing members with absolute
   paths, ``..`` parts, links or device files — before writing anything;
3. **verify** the key extracted files against their checksums, for archives that are not byte-stable
   (GitHub builds ``archive/<commit>.zip`` on the fly, so only its contents can be pinned);
4. **rename** the temporary folder to its final name: a folder in the cache is complete or absent.

Any failure removes what it wrote and raises a one-line error that names the dataset:
:class:`ChecksumError` (wrong bytes), :class:`UnsafeArchiveError` (a member would escape the cache) or
:class:`DownloadError` (no network, HTTP error), which says which offline benchmark works instead.

``MAGMA_TEACH_MIRROR`` replaces the base URL of every download: with it set to ``http://host/data``,
``Remote("esc50", "https://github.com/karolpiczak/ESC-50/archive", "<commit>.zip", ...)`` is fetched
from ``http://host/data/<commit>.zip``. A mirror therefore holds each file at its ``path``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from magma_teach.data.cache import cache_root

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
    import requests

    pooch.get_logger().setLevel("WARNING")
    folder.mkdir(parents=True, exist_ok=True)
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
    return Path(path)


# --- safe extraction --------------------------------------------------------------------------------

def unsafe_reason(name: str) -> str | None:
    """Why an archive member name is unsafe to extract, or ``None`` when it stays inside the target."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a '..' part"
    return None


def _check_members(archive: Path, dataset: str) -> None:
    """Raise :class:`UnsafeArchiveError` if any member could land outside the extraction folder."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            members = [(info.filename, None) for info in handle.infolist()]
    else:
        with tarfile.open(archive) as handle:
            members = [(m.name, None if (m.isfile() or m.isdir()) else "a link or device file")
                       for m in handle.getmembers()]
    refuse_unsafe_members(members, archive.name, dataset)


def refuse_unsafe_members(members: list[tuple[str, str | None]], archive_name: str, dataset: str) -> None:
    """Raise :class:`UnsafeArchiveError` for the first ``(name, problem)`` member that is unsafe: a name
    :func:`unsafe_reason` rejects, or a ``problem`` the archive format found (e.g. a link)."""
    for name, problem in members:
        reason = unsafe_reason(name) or problem
        if reason:
            raise UnsafeArchiveError(f"{dataset}: refused to extract {archive_name}: member {name!r} has "
                                     f"{reason}; removed the archive")


def safe_extract(archive: Path, destination: Path, dataset: str) -> None:
    """Extract a zip or tar archive into ``destination`` after :func:`_check_members` accepted it."""
    _check_members(archive, dataset)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(destination)
    else:
        with tarfile.open(archive) as handle:
            # The "data" filter (Python >= 3.10.12) is a second guard on top of _check_members.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            handle.extractall(destination, **extra)


@contextmanager
def staging_folder(final: Path):
    """A temporary folder beside ``final``; renamed to ``final`` on success, deleted on any error."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
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
    """
    root = downloads_dir(remote.dataset, cache_dir)
    final = root / _stem(remote.name)
    if final.is_dir():
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
    except (DownloadError, tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
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
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
