"""Two processes on one cache, and processes killed halfway (magma_teach.data.cache and .download).

Every test runs real Python subprocesses. They are stepped by files, never by sleeping: a child
touches a marker file when it reaches a point, and waits for a "go" file before going on; the test
reads a child's stderr to see that it is waiting for the lock. Deadlines only stop a broken test
from hanging; no assertion depends on how long anything takes.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from magma_teach.data import cache, download
from magma_teach.data.download import Remote

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120  # only against a hang: a child importing torch on a busy 2-core machine is slow
CONFIG = {"a": 1}

# A child that builds the "slow" benchmark into a cache. argv: cache dir, work dir. The build logs
# its pid to work/builds, touches work/building, waits for work/go, then returns a 1000-element
# tensor; with work/half_save present, torch.save writes half the bytes, touches work/saving and
# waits forever (to be killed there).
BUILDER = r"""
import os, sys, time
from pathlib import Path
import torch
from magma_teach.data import cache

cache_dir, work = Path(sys.argv[1]), Path(sys.argv[2])

def wait_for(name):
    while not (work / name).exists():
        time.sleep(0.01)

def build():
    with open(work / "builds", "a") as log:
        log.write(f"{os.getpid()}\n")
    (work / "building").touch()
    wait_for("go")
    return {"x": torch.arange(1000.0), "builder": os.getpid()}

if (work / "half_save").exists():
    real_save = torch.save
    def half_save(obj, handle):
        real_save(obj, handle)
        handle.seek(0)
        handle.truncate(handle.tell() + 100)  # what a killed writer leaves: a file cut short
        handle.flush()
        (work / "saving").touch()
        wait_for("never")
    torch.save = half_save

payload = cache.cached("slow", {"a": 1}, build, cache_dir)
print(payload["builder"], float(payload["x"].sum()))
"""

# A child that fetches one archive from the mirror (MAGMA_TEACH_MIRROR / _CACHE come from the test's
# environment). argv: work dir, archive name, sha256. Extraction logs the pid to work/extractions,
# touches work/extracting and waits for work/go.
FETCHER = r"""
import os, sys, time
from pathlib import Path
from magma_teach.data import download

work, name, sha = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
real_extract = download.safe_extract

def slow_extract(*args, **kwargs):
    with open(work / "extractions", "a") as log:
        log.write(f"{os.getpid()}\n")
    (work / "extracting").touch()
    while not (work / "go").exists():
        time.sleep(0.01)
    return real_extract(*args, **kwargs)

download.safe_extract = slow_extract
remote = download.Remote("esc50", "https://unused.example", name, known_hash=sha)
print(download.fetch_folder(remote, progress=False))
"""


def _start(script: str, *args, stderr_to: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=stderr_to.open("w"))


def _wait_until(condition, what: str, child: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until it holds; fail (not hang) if ``child`` dies or the deadline passes."""
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if child is not None and child.poll() is not None:
            pytest.fail(f"the child exited ({child.returncode}) before {what}: {child.communicate()}")
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def _finish(child: subprocess.Popen) -> str:
    out, _ = child.communicate(timeout=DEADLINE_S)
    assert child.returncode == 0, out
    return out


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=DEADLINE_S)
    assert child.returncode == -signal.SIGKILL


def _lock_is_free(target: Path) -> bool:
    """Whether nobody holds the lock of ``target`` (tried once, without waiting)."""
    lock = FileLock(str(cache.lock_path(target)))
    try:
        lock.acquire(timeout=0)
    except Exception:  # noqa: BLE001 - filelock.Timeout: someone holds it
        return False
    lock.release()
    return True


def _leftovers(folder: Path) -> list[str]:
    """Temporary files and staging folders under ``folder`` (lock files are not leftovers)."""
    return sorted(p.name for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".partial")) or download._POOCH_TEMP.fullmatch(p.name))


# --- the benchmark cache ----------------------------------------------------------------------------

def test_two_processes_building_one_file_build_it_once(tmp_path):
    work, store = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    first = _start(BUILDER, store, work, stderr_to=tmp_path / "first.err")
    _wait_until(lambda: (work / "building").exists(), "the first build started", first)
    second = _start(BUILDER, store, work, stderr_to=tmp_path / "second.err")
    path = cache.cache_path("slow", CONFIG, store)
    waiting = f"magma_teach: waiting for another process that is writing {cache.display_path(path)}\n"
    _wait_until(lambda: waiting in (tmp_path / "second.err").read_text(), "the second one waited", second)
    (work / "go").touch()
    outputs = {_finish(first), _finish(second)}
    assert (tmp_path / "second.err").read_text() == waiting  # that one line, and nothing else
    builders = (work / "builds").read_text().split()
    assert outputs == {f"{builders[0]} 499500.0\n"} and len(builders) == 1  # one build, loaded by both
    assert (tmp_path / "first.err").read_text() == ""
    assert sorted(p.name for p in store.iterdir()) == [".locks", path.name] and _leftovers(store) == []
    assert torch.equal(cache.load_payload(path)["x"], torch.arange(1000.0))


def test_a_build_killed_halfway_blocks_nothing(tmp_path, capsys):
    work, store = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    child = _start(BUILDER, store, work, stderr_to=tmp_path / "child.err")
    path = cache.cache_path("slow", CONFIG, store)
    _wait_until(lambda: (work / "building").exists(), "the build started", child)
    assert not _lock_is_free(path)  # the child holds it while it builds
    _kill(child)
    assert _lock_is_free(path)  # the kernel released it with the process
    payload = cache.cached("slow", CONFIG, lambda: {"x": torch.zeros(2)}, store)
    assert torch.equal(payload["x"], torch.zeros(2)) and capsys.readouterr().err == ""
    assert sorted(p.name for p in store.iterdir()) == [".locks", path.name]


def test_a_save_killed_halfway_leaves_nothing_the_next_run_trips_over(tmp_path, capsys):
    work, store = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    (work / "half_save").touch()
    (work / "go").touch()
    child = _start(BUILDER, store, work, stderr_to=tmp_path / "child.err")
    _wait_until(lambda: (work / "saving").exists(), "the save was half done", child)
    _kill(child)
    path = cache.cache_path("slow", CONFIG, store)
    (half,) = _leftovers(store)  # the cut-short temporary file ...
    assert half.startswith(f".{path.name}.") and not path.exists()  # ... never took the final name
    payload = cache.cached("slow", CONFIG, lambda: {"x": torch.ones(3)}, store)
    assert torch.equal(payload["x"], torch.ones(3)) and capsys.readouterr().err == ""
    assert _leftovers(store) == []  # removed by the next save of the same file
    assert torch.equal(cache.load_payload(path)["x"], torch.ones(3))


def test_threads_of_one_process_also_build_once(tmp_path):
    import threading

    started, go, calls, results = threading.Event(), threading.Event(), [], []

    def build():
        calls.append(1)
        started.set()
        go.wait(DEADLINE_S)
        return {"x": torch.arange(3)}

    def run():
        results.append(cache.cached("slow", CONFIG, build, tmp_path))

    lines = []
    handler = type("Keep", (__import__("logging").Handler,), {"emit": lambda self, r: lines.append(r.getMessage())})()
    cache.log.addHandler(handler)
    try:
        first = threading.Thread(target=run)
        first.start()
        assert started.wait(DEADLINE_S)
        second = threading.Thread(target=run)
        second.start()
        _wait_until(lambda: any("waiting for another" in line for line in lines), "the second thread waited")
        go.set()
        first.join(DEADLINE_S)
        second.join(DEADLINE_S)
    finally:
        cache.log.removeHandler(handler)
    assert len(calls) == 1 and len(results) == 2 and all(torch.equal(r["x"], torch.arange(3)) for r in results)


# --- downloads --------------------------------------------------------------------------------------

def _served_zip(mirror: Path) -> tuple[str, str]:
    import hashlib
    import zipfile

    with zipfile.ZipFile(mirror / "good.zip", "w") as handle:
        handle.writestr("top/meta/data.csv", "filename,label\na.wav,0\n")
    return "good.zip", "sha256:" + hashlib.sha256((mirror / "good.zip").read_bytes()).hexdigest()


def test_two_processes_fetching_one_archive_share_one_extraction(mirror, tmp_path):
    name, sha = _served_zip(mirror)
    work = tmp_path / "work"
    work.mkdir()
    first = _start(FETCHER, work, name, sha, stderr_to=tmp_path / "first.err")
    _wait_until(lambda: (work / "extracting").exists(), "the first extraction started", first)
    second = _start(FETCHER, work, name, sha, stderr_to=tmp_path / "second.err")
    _wait_until(lambda: "waiting for another process" in (tmp_path / "second.err").read_text(),
                "the second one waited", second)
    (work / "go").touch()
    assert _finish(first) == _finish(second)
    assert len((work / "extractions").read_text().split()) == 1  # the second found the folder complete
    root = tmp_path / "cache" / "downloads" / "esc50"
    assert (root / "good" / "top/meta/data.csv").is_file() and _leftovers(tmp_path / "cache") == []
    assert sorted(p.name for p in root.iterdir()) == ["good"]


def test_a_fetch_killed_halfway_is_cleaned_up_by_the_next(mirror, tmp_path):
    name, sha = _served_zip(mirror)
    work = tmp_path / "work"
    work.mkdir()
    child = _start(FETCHER, work, name, sha, stderr_to=tmp_path / "child.err")
    _wait_until(lambda: (work / "extracting").exists(), "the extraction started", child)
    _kill(child)
    root = tmp_path / "cache" / "downloads" / "esc50"
    (root / "tmpab12cd_9").write_bytes(b"half a download")  # what pooch leaves when killed mid-download
    assert len(_leftovers(tmp_path / "cache")) == 2  # that, and the child's staging folder
    assert _lock_is_free(root)
    remote = Remote("esc50", "https://unused.example", name, known_hash=sha)
    folder = download.fetch_folder(remote, progress=False)
    assert (folder / "top/meta/data.csv").is_file() and _leftovers(tmp_path / "cache") == []
