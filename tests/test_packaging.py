"""What users install: the wheel, and the install cell at the top of every chapter.

* ``python -m build`` makes an sdist and, from it, a wheel that holds every module and data file of
  the package (a new subpackage without ``__init__.py``, or a data file setuptools does not know
  about, would be missing from it) and nothing from outside the package.
  (.ci/run goes further: it installs that wheel in a fresh environment and runs it from outside the
  source tree; that stage is too slow for a unit test.)
* ``scripts/sync_notebooks.py`` keeps the Colab badges and install cells on the repository URL of
  ``_config.yml``; its install cell never replaces the torch that is already installed, and a failed
  install ends in one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "magma_teach"


def _load_sync():
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_sync()


def _package_files() -> set[str]:
    """Every file under magma_teach/ that belongs in the wheel (not caches or compiled files)."""
    files = set()
    for path in (ROOT / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.add(path.relative_to(ROOT).as_posix())
    return files


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"python -m build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_wheel_holds_every_module_and_data_file(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_package_files() - names)
    assert not missing, (f"the wheel leaves out {missing}: give every package folder an __init__.py, "
                         f"and data files a [tool.setuptools.package-data] entry in pyproject.toml")
    for package in {Path(name).parent for name in _package_files() if name.endswith(".py")}:
        assert f"{package.as_posix()}/__init__.py" in names, f"{package} has no __init__.py in the wheel"


def test_wheel_holds_nothing_from_outside_the_package(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    stray = [n for n in names if not n.startswith(f"{PACKAGE}/") and ".dist-info/" not in n]
    assert not stray, f"the wheel installs files outside {PACKAGE}/: {stray}"
    assert not [n for n in names if n.endswith((".pyc", ".pt", ".ipynb"))]


def test_wheel_metadata_has_the_entry_point_and_the_torch_bounds(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "magma-teach = magma_teach.cli:run" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for name in ("torch", "torchaudio", "torchvision"):
        assert any(r.startswith(f"{name}>=") for r in requires), f"no lower bound for {name} in {requires}"


def test_twine_accepts_both_distributions(built):
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# --- the notebooks follow _config.yml ---------------------------------------------------------------

def test_chapter_notebooks_match_config():
    """Fails until ``python scripts/sync_notebooks.py`` has been run on the chapters (and committed)."""
    changed = sync.out_of_sync(ROOT)
    names = [p.relative_to(ROOT).as_posix() for p in changed]
    assert not names, f"run `python scripts/sync_notebooks.py`: these notebooks differ from _config.yml: {names}"


def _notebook(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": text}


def _code(text: str, count: int, tags=(), outputs=()) -> dict:
    return {"cell_type": "code", "execution_count": count, "id": f"c{count}", "metadata": {"tags": list(tags)},
            "outputs": list(outputs), "source": text}


OLD_INSTALL = ('try:\n    import magma_teach  # noqa: F401\nexcept ImportError:\n'
               '    %pip install -q "magma_teach @ git+https://github.com/old/place"')
OUTPUT = {"name": "stdout", "output_type": "stream", "text": ["42\n"]}


@pytest.fixture
def fork(tmp_path):
    """A tiny book whose two chapters still point at github.com/old/place (badge and install cell)."""
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/a\n  - file: book/b.ipynb\n", encoding="utf-8")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n", encoding="utf-8")
    badge = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    a = _notebook([_markdown(f"# A\n\n{badge}(https://colab.research.google.com/github/old/place/blob/main/book/a.ipynb)\n"),
                   _code(OLD_INSTALL, 1, tags=["remove-cell"]),
                   _code("print(42)", 2, outputs=[OUTPUT])])
    b = _notebook([_markdown("# B\n\nNo badge yet."), _code("print(42)", 1, outputs=[OUTPUT])])
    for name, nb in (("a", a), ("b", b)):
        (tmp_path / "book" / f"{name}.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")
    (tmp_path / "_config.yml").write_text(
        "title: t\nrepository:\n  url: https://github.com/new-owner/new_repo.git\n  branch: dev\n", encoding="utf-8")
    return tmp_path


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_sync_check_lists_the_notebooks_that_differ_and_sync_fixes_them(fork, capsys):
    assert sync.main(["--check", "--root", str(fork)]) == 1
    out = capsys.readouterr().out
    assert "book/a.ipynb" in out and "book/b.ipynb" in out
    assert sync.main(["--root", str(fork)]) == 0
    assert sync.main(["--check", "--root", str(fork)]) == 0
    assert "match https://github.com/new-owner/new_repo@dev" in capsys.readouterr().out


def test_sync_rewrites_badge_and_install_cell_and_keeps_outputs(fork):
    sync.main(["--root", str(fork)])
    a, b = _read(fork / "book" / "a.ipynb"), _read(fork / "book" / "b.ipynb")
    for name, nb in (("a", a), ("b", b)):
        markdown = "".join(nb["cells"][0]["source"])
        assert f"https://colab.research.google.com/github/new-owner/new_repo/blob/dev/book/{name}.ipynb" in markdown
        assert "old/place" not in json.dumps(nb)
        installs = [c for c in nb["cells"] if "".join(c["source"]).startswith(sync.INSTALL_MARKER)]
        assert len(installs) == 1 and "remove-cell" in installs[0]["metadata"]["tags"]
        assert "".join(installs[0]["source"]) == sync.install_cell_source("https://github.com/new-owner/new_repo", "dev")
        assert nb["cells"][-1]["outputs"] == [OUTPUT]
    # a's install cell keeps its place and its execution count; b gets a new one after its first markdown
    assert a["cells"][1]["execution_count"] == 1 and a["cells"][1]["id"] == "c1"
    assert b["cells"][1]["execution_count"] is None and b["cells"][2]["execution_count"] == 1
    assert "".join(b["cells"][0]["source"]).startswith("# B\n\n[![Open In Colab]")


def test_sync_is_idempotent(fork):
    sync.main(["--root", str(fork)])
    first = {p: p.read_bytes() for p in (fork / "book").glob("*.ipynb")}
    assert sync.out_of_sync(fork) == {}
    sync.main(["--root", str(fork)])
    assert first == {p: p.read_bytes() for p in (fork / "book").glob("*.ipynb")}


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", ""])
def test_sync_refuses_a_url_colab_cannot_open(fork, url, capsys):
    config = fork / "_config.yml"
    config.write_text(f"repository:\n  url: {url!r}\n", encoding="utf-8")
    assert sync.main(["--check", "--root", str(fork)]) == 2
    assert "repository.url must be https://github.com/<owner>/<name>" in capsys.readouterr().err
    with pytest.raises(ValueError, match="repository.url"):
        sync.repository(fork)


def test_install_cell_is_silent_where_magma_teach_is_installed(capsys):
    # What nbval sees in CI: the committed cell has no output, and running it must print nothing.
    exec(compile(sync.install_cell_source("https://github.com/a/b", "main"), "<install cell>", "exec"), {})
    assert capsys.readouterr() == ("", "")


# --- the install cell where magma_teach is missing: fake packages, a local index, no network ----------

# A minimal pure-Python wheel writer, used here for stand-in torch/torchaudio wheels and, as the
# in-tree build backend of the stand-in magma_teach, by pip itself (so nothing needs downloading).
WHEEL_WRITER = """
import zipfile


def write_wheel(folder, name, version, requires=(), files=None):
    info = f"{name}-{version}.dist-info"
    files = dict(files or {})
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
                                 + "".join(f"Requires-Dist: {r}\\n" for r in requires)
                                 + ("Provides-Extra: book\\n" if any("extra ==" in r for r in requires) else ""))
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{info}/RECORD"] = "".join(f"{n},,\\n" for n in files) + f"{info}/RECORD,,\\n"
    filename = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(f"{folder}/{filename}", "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return filename
"""
_writer: dict = {}
exec(WHEEL_WRITER, _writer)
write_wheel = _writer["write_wheel"]


def _git_package(folder: Path, torch_requirement: str) -> str:
    """A git repository holding a stand-in magma_teach that needs ``torch_requirement``; its URL.

    Its ``book`` extra needs torchaudio. It builds with an in-tree backend that needs nothing else.
    The URL names ``localhost``: older pip refuses ``git+file:///path`` in a ``name @ url`` requirement.
    """
    folder.mkdir(parents=True)
    requires = (torch_requirement, 'torchaudio; extra == "book"')
    (folder / "backend.py").write_text(WHEEL_WRITER + textwrap.dedent(f"""

        def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
            return write_wheel(wheel_directory, "magma_teach", "0.0.1", {requires!r},
                               {{"magma_teach/__init__.py": ""}})
        """), encoding="utf-8")
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n', encoding="utf-8")
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "stand-in"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return f"file://localhost{folder.as_posix()}"


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """A venv with a stand-in torch 1.0, and a local index offering torch 1.0/2.0 and a torchaudio for each.

    torchaudio 2.0 needs torch 2.0: an unconstrained ``pip install`` of the book extra takes it and
    *replaces torch* (what must never happen to Colab's PyTorch).
    """
    base = tmp_path_factory.mktemp("installcell")
    wheels = base / "wheels"
    wheels.mkdir()
    for version in ("1.0", "2.0"):
        write_wheel(wheels, "torch", version)
        write_wheel(wheels, "torchaudio", version, (f"torch=={version}",))
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, capture_output=True)
    python = str(base / "venv" / "bin" / "python")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PIP_CONSTRAINT", None)
    env.pop("PYTHONPATH", None)
    subprocess.run([python, "-m", "pip", "install", "-q", "torch==1.0"], check=True, capture_output=True, env=env)
    return base, python, env


def _versions(python: str, env: dict) -> dict[str, str]:
    done = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                          env=env, check=True)
    return {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(done.stdout)}


def _fresh(base: Path, python: str, env: dict, name: str, torch_requirement: str) -> str:
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "magma_teach", "torchaudio"],
                   capture_output=True, env=env)
    subprocess.run([python, "-m", "pip", "install", "-q", "torch==1.0"], check=True, capture_output=True, env=env)
    return _git_package(base / name, torch_requirement)


def test_install_cell_installs_the_book_extra_and_keeps_torch(offline_env):
    base, python, env = offline_env
    url = _fresh(base, python, env, "ok", "torch>=1")
    done = subprocess.run([python, "-c", sync.install_cell_source(url, "main")], capture_output=True, text=True,
                          env=env, timeout=300, cwd=base)  # not the source tree: `-c` puts the cwd on sys.path
    assert done.returncode == 0, done.stdout + done.stderr
    versions = _versions(python, env)
    assert versions["torch"] == "1.0", "the install cell replaced torch"
    assert versions["torchaudio"] == "1.0" and versions["magma-teach"] == "0.0.1"


def test_without_the_constraint_pip_would_replace_torch(offline_env):
    # The control for the test above: the same install, unconstrained, does upgrade torch.
    base, python, env = offline_env
    url = _fresh(base, python, env, "control", "torch>=1")
    subprocess.run([python, "-m", "pip", "install", "-q", f"magma_teach[book] @ git+{url}@main"],
                   check=True, capture_output=True, env=env, timeout=300)
    assert _versions(python, env)["torch"] == "2.0"


def test_install_cell_fails_in_one_line_rather_than_replace_torch(offline_env):
    base, python, env = offline_env
    url = _fresh(base, python, env, "needs2", "torch>=2")
    done = subprocess.run([python, "-c", sync.install_cell_source(url, "main")], capture_output=True, text=True,
                          env=env, timeout=300, cwd=base)  # not the source tree: `-c` puts the cwd on sys.path
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        f"RuntimeError: could not install magma_teach from {url}@main; see pip's messages above")
    assert "ResolutionImpossible" in done.stdout or "conflict" in done.stdout.lower()
    assert _versions(python, env)["torch"] == "1.0"
