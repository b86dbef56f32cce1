"""The Pages workflow's own build command, run against loopback stand-ins of its two servers.

``.github/workflows/book.yml`` builds the book in the imagenette profile on GitHub's runner, which has a
network. Here its build step's ``run`` command is executed as the runner would execute it: in a fresh
copy of the repository's tracked files, with the job's environment, a fresh home folder (so the
``~/.cache/huggingface`` the workflow keeps between builds is this test's), and a data folder and cache
folder inside the copy, as the workflow's cache steps expect. Only the host names differ: a stand-in
server on 127.0.0.1 (``imagenette_standins.serve``: the small ImageNette archive in the release's layout
and the profile's timm models with random weights), started and stopped here, is reached through
``HF_ENDPOINT`` and the documented mirror setting ``MEAL_LITE_IMAGENETTE_URL``.

- the build succeeds, every chapter's page is written and says that the imagenette profile built it, and
  every folder the workflow caches between builds holds what the build downloaded or made;
- a download that fails (a 404 for the archive) fails the build with the one-sentence error: nothing
  falls back to the digits.

A whole book build: these run in ``make test-imagenette`` (``--imagenette-standins``), not in ``make test``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from book_utils import REPO_ROOT, strip_ansi

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "book.yml"
CHAPTERS = sorted(p.stem for p in (REPO_ROOT / "book").glob("*.ipynb"))
#: Set by the stand-ins plugin or a user's shell; the runner has none of them.
NOT_ON_THE_RUNNER = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MEAL_LITE_DATA_HOME", "MEAL_LITE_CACHE", "HF_HOME", "TORCH_HOME", "MEAL_LITE_WORKERS",
                     "MEAL_LITE_IMAGENETTE_URL", "MEAL_LITE_IMAGENETTE_MD5", "PYTHONPATH")
BUILD_TIMEOUT = 1500


@pytest.fixture(autouse=True)
def _only_with_the_standins(request):
    if not request.config.getoption("imagenette_standins", False):
        pytest.skip("a whole book build against the stand-ins: make test-imagenette runs it")


def build_job():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    job = workflow["jobs"]["build"]
    (step,) = [s for s in job["steps"] if re.search(r"(^|\s)make book(\s|$)", s.get("run", ""))]
    return job, step


def runner_copy(tmp_path: Path) -> Path:
    """The repository as actions/checkout leaves it (tracked files, their times kept so make sees the venv
    as up to date), with this checkout's venv, and the digits teachers a restored data/cache would hold."""
    copy = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(REPO_ROOT / ".venv")
    cache = copy / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    # Only the digits teachers (section 3.7): the imagenette profile's baseline is trained by this build.
    source = Path(os.environ.get("MEAL_LITE_CACHE", REPO_ROOT / "data" / "cache"))
    for path in source.glob("digits-*.pt"):
        shutil.copy2(path, cache / path.name)
    return copy


def run_build(tmp_path: Path, url: str, md5: str, endpoint: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    job, step = build_job()
    copy, home = runner_copy(tmp_path), tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_THE_RUNNER}
    env.update({k: str(v) for k, v in job.get("env", {}).items() if not k.startswith("PIP_")})  # no pip install runs
    env.update(step.get("env", {}))
    # The host names: the only difference from the runner.
    env.update(HOME=str(home), HF_ENDPOINT=endpoint, MEAL_LITE_IMAGENETTE_URL=url, MEAL_LITE_IMAGENETTE_MD5=md5)
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=copy, env=env, capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT)
    return result, copy, home



@pytest.fixture(scope="module")
def server():
    from imagenette_standins import serve

    server, archive, files = serve()
    try:
        yield server, archive, files
    finally:
        server.stop()


def test_the_workflow_builds_the_imagenette_profile_against_the_standins(server, tmp_path):
    from imagenette_standins import ARCHIVE, ARCHIVE_GETS_PER_DOWNLOAD
    from standins import md5

    stand_in, archive, files = server
    job, _ = build_job()
    assert job["env"]["MEAL_LITE_PROFILE"] == "imagenette" and "HF_HUB_OFFLINE" not in job["env"]
    result, copy, home = run_build(tmp_path, stand_in.url + ARCHIVE, md5(archive), stand_in.url)
    log = strip_ansi(result.stdout + result.stderr)  # the tracebacks are coloured
    # which notebook the build was executing when it failed (myst-nb logs each one), then the log's end
    executing = "\n".join(line for line in log.splitlines() if "xecut" in line and "[mystnb]" in line)
    assert result.returncode == 0, executing + "\n...\n" + log[-6000:]
    html = copy / "_build" / "html"
    for chapter in CHAPTERS:
        page = html / "book" / f"{chapter}.html"
        assert page.is_file(), f"{page} was not written"
        # Section 3.7 runs on the digits in either profile and says so beside "the book's profile: imagenette".
        assert "profile: imagenette" in page.read_text(encoding="utf-8"), f"{chapter} does not say the imagenette profile built it"
    # What the workflow keeps between builds is where the build put it.
    cached = [s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/cache")]
    for path in cached:
        if path == "~/.cache/pip":
            continue  # pip ran before this step on the runner; the venv here is the checkout's
        folder = home / path[2:] if path.startswith("~/") else copy / path
        assert folder.is_dir() and any(folder.rglob("*")), f"the workflow caches {path}, but the build left nothing there"
    assert any((copy / "data" / "cache").glob("baseline-*.pt")), "the shared baseline was not kept in data/cache"
    gets = [p for m, p in list(stand_in.requests) if m == "GET"]
    assert gets.count(ARCHIVE) == ARCHIVE_GETS_PER_DOWNLOAD  # one download
    assert all(gets.count(path) == 1 for path in files if path in gets), "a hub file was downloaded twice in one build"


def test_a_failed_download_fails_the_build_with_one_sentence(server, tmp_path):
    from standins import md5

    stand_in, archive, _ = server
    result, copy, _ = run_build(tmp_path, stand_in.url + "/gone/imagenette2-160.tgz", md5(archive), stand_in.url)
    log = strip_ansi(result.stdout + result.stderr)  # the tracebacks are coloured
    assert result.returncode != 0, "the build passed although ImageNette could not be downloaded"
    assert re.search(r"DataError: [^\n]*answered HTTP 404[^\n]*", log), log[-6000:]
    assert not (copy / "data" / "imagenette2-160").exists()
    assert not (copy / "_build" / "html" / "index.html").exists(), "a page was published from a failed build"
