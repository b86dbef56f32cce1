"""The imagenette profile's downloads, through meal-lite's real code, against stand-ins of its two servers.

The servers (``tests/standins.py``) run on 127.0.0.1 at a free port, started and stopped here: fast.ai's
archive host (an ``imagenette2-160.tgz`` in the release's layout) and the Hugging Face hub's file
endpoints (``model.safetensors`` of the few small timm models trained here, random weights). meal-lite
reaches them only as a user's run would: ``MEAL_LITE_IMAGENETTE_URL``/``_MD5`` (a mirror) for the
archive, torchvision's download, md5 check and extraction; ``HF_ENDPOINT`` for the hub, which
huggingface_hub reads when imported - so the commands run in subprocesses, each with fresh ``HF_HOME``
and ``TORCH_HOME`` folders. Nothing of meal-lite is replaced.

- the archive's failure modes, each one sentence, leaving nothing behind, and the next run succeeds;
- a broken hub file is one sentence, and the next run downloads it again;
- ``meal-lite train`` / ``train.resume=true`` / ``eval`` / ``cache`` under ``MEAL_LITE_PROFILE=imagenette``
  at a tiny size; only the first command downloads anything;
- issue 20's defects: a mirror on another port is probed (not 443, not the official host); ``eval``
  scores a checkpoint with its run's data settings; the offline demo fails in one line without a
  worker's traceback; chapter 6 (``every_nth``, the step-rate cell) on a small ImageNette split; chapter 2's
  claim that needs trained teachers is asserted only in the offline profile.

``meal-lite demo`` itself is not run against the stand-ins (issue 20 measured 322 s for it at its smallest
settings on main, too much for the suite); only its offline failure is.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

from fake_data import make_fake_imagenette  # noqa: E402
from meal_lite import network, settings  # noqa: E402
from meal_lite.data import imagenette_datasets, resolve_data_root  # noqa: E402
from meal_lite.data.digits import digits_datasets  # noqa: E402
from meal_lite.errors import ConfigError, DataError  # noqa: E402
from meal_lite.experiments import Experiment, accuracy_vs_crops, base_config, every_nth  # noqa: E402
from meal_lite.training import one_thread  # noqa: E402
from standins import CLIENT_ENV_DROPPED, StandInServer, hub_repo, hub_weights, imagenette_archive, md5  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = "/imagenette2-160.tgz"
STUDENT = "resnet18"  # the imagenette profile's student, pretrained from the (stand-in) hub
TEACHERS = ("test_convnext.r160_in1k", "test_efficientnet.r160_in1k")  # small members of the preset's families
SUBPROCESS_TIMEOUT = 240


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run as fast on one thread, and a busy machine cannot slow them down by oversubscription."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def archive() -> bytes:
    return imagenette_archive(n_train=3, n_val=2)


@pytest.fixture
def server():
    with StandInServer() as standin:
        yield standin


@pytest.fixture
def mirror(server, archive, monkeypatch):
    """The stand-in serves the archive; this process's downloads go to it (1 s timeouts)."""
    server.serve(ARCHIVE, archive)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(settings.IMAGENETTE_URL, server.url + ARCHIVE)
    monkeypatch.setenv(settings.IMAGENETTE_MD5, md5(archive))
    monkeypatch.setenv(settings.DOWNLOAD_TIMEOUT, "1")
    monkeypatch.setenv(settings.PROBE_TIMEOUT, "1")
    return server


def _downloads(server: StandInServer) -> int:
    """Requests for files (the archive, hub files); huggingface_hub's best-effort registry GET is not one."""
    return sum(1 for _, path in server.requests if path == ARCHIVE or "/resolve/" in path)


def _env(home: Path, server: StandInServer | None = None, archive_md5: str | None = None, **extra: str) -> dict:
    """The environment of a command run as a user would, pointed at the stand-ins."""
    drop = {*CLIENT_ENV_DROPPED, settings.IMAGENETTE_URL, settings.IMAGENETTE_MD5}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")]),
        MEAL_LITE_PROFILE="imagenette", HF_HOME=str(home / "hf"), TORCH_HOME=str(home / "torch"),
        MEAL_LITE_WORKERS="1", MEAL_LITE_PROBE_TIMEOUT="2", MEAL_LITE_DOWNLOAD_TIMEOUT="20",
        HF_HUB_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1",  # tiny models: one thread is as fast, and never oversubscribed
    )
    if server is not None:
        env.update(HF_ENDPOINT=server.url, MEAL_LITE_IMAGENETTE_URL=server.url + ARCHIVE,
                   MEAL_LITE_IMAGENETTE_MD5=archive_md5 or "")
    env.update(extra)
    return env


def _run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT)


def _no_leftovers(root: Path) -> None:
    """Nothing half-done under ``root``: no staging folder, no archive, no partial ImageNette folder."""
    assert not list(root.glob(".imagenette2-160.download-*")) and not list(root.rglob("*.tgz"))


# --------------------------------------------------------------------------------------------------
# The archive: a mirror, and every way its download fails


def test_mirror_on_a_random_port_is_probed_there(server):
    assert network.url_reachable(server.url + ARCHIVE, timeout=1)  # port from the URL, not 443
    url = server.url
    server.stop()
    assert not network.url_reachable(url + ARCHIVE, timeout=1)


def test_download_from_the_mirror(mirror, archive, tmp_path):
    splits = imagenette_datasets(tmp_path, download=True)
    assert [len(splits["train"]), len(splits["val"])] == [30, 20]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert len([n for n in tar.getnames() if n.endswith(".JPEG")]) == 50
    assert (tmp_path / "imagenette2-160" / "noisy_imagenette.csv").is_file() and mirror.count("GET") >= 1
    _no_leftovers(tmp_path)
    before = _downloads(mirror)
    imagenette_datasets(tmp_path, download=True)  # already there: no request
    assert _downloads(mirror) == before


@pytest.mark.parametrize("case, needle", [
    ("404", "answered HTTP 404"),
    ("cut off", "does not have the md5"),  # the connection closes after half the bytes
    ("wrong md5", "does not have the md5"),
    ("truncated archive", "cannot be extracted"),  # the mirror's own file is cut short (and its md5 says so)
    ("stall", "sent nothing for 1 s"),
    ("not imagenette", "does not hold 'imagenette2-160/train'"),
])
def test_failed_download_is_one_sentence_and_leaves_nothing(mirror, archive, tmp_path, monkeypatch, case, needle):
    if case == "404":
        del mirror.routes[ARCHIVE]
    elif case == "cut off":
        mirror.serve(ARCHIVE, archive, mode="truncate")
    elif case == "wrong md5":
        monkeypatch.setenv(settings.IMAGENETTE_MD5, md5(b"another file"))
    elif case == "truncated archive":
        mirror.serve(ARCHIVE, archive[: len(archive) // 2])
        monkeypatch.setenv(settings.IMAGENETTE_MD5, md5(archive[: len(archive) // 2]))
    elif case == "stall":
        mirror.serve(ARCHIVE, archive, mode="stall")
    else:
        other = imagenette_archive(n_train=1, n_val=1, top="somewhere-else")
        mirror.serve(ARCHIVE, other)
        monkeypatch.setenv(settings.IMAGENETTE_MD5, md5(other))
    with pytest.raises(DataError) as info:
        imagenette_datasets(tmp_path, download=True)
    message = str(info.value)
    assert needle in message and "\n" not in message and message.count(". ") == 0, message
    assert not (tmp_path / "imagenette2-160").exists()
    _no_leftovers(tmp_path)
    # The next run, with a good server, succeeds.
    mirror.serve(ARCHIVE, archive)
    monkeypatch.setenv(settings.IMAGENETTE_MD5, md5(archive))
    assert len(imagenette_datasets(tmp_path, download=True)["val"]) == 20


def test_mirror_settings_are_checked_before_any_request(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.IMAGENETTE_URL, mirror.url + "/imagenette2-320.tgz")
    with pytest.raises(ConfigError, match="does not end in 'imagenette2-160.tgz'"):
        imagenette_datasets(tmp_path, download=True)
    monkeypatch.setenv(settings.IMAGENETTE_URL, mirror.url + ARCHIVE)
    monkeypatch.setenv(settings.IMAGENETTE_MD5, "not-an-md5")
    with pytest.raises(ConfigError, match="MEAL_LITE_IMAGENETTE_MD5='not-an-md5' is not an md5"):
        imagenette_datasets(tmp_path, download=True)
    monkeypatch.setenv(settings.IMAGENETTE_URL, "mirror.example.org/imagenette2-160.tgz")
    with pytest.raises(ConfigError, match="is not an http\\(s\\), ftp or file URL"):
        imagenette_datasets(tmp_path, download=True)
    monkeypatch.delenv(settings.IMAGENETTE_URL)
    with pytest.raises(ConfigError, match="MEAL_LITE_IMAGENETTE_MD5 is set but MEAL_LITE_IMAGENETTE_URL is not"):
        imagenette_datasets(tmp_path, download=True)
    monkeypatch.setenv(settings.DOWNLOAD_TIMEOUT, "-1")
    with pytest.raises(ConfigError, match="MEAL_LITE_DOWNLOAD_TIMEOUT='-1' is not a positive number"):
        settings.download_timeout()
    assert mirror.requests == []


def test_relative_data_root_is_the_project_root_inside_a_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "meal_lite").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (checkout / "book").mkdir()
    monkeypatch.chdir(checkout / "book")  # where the chapters run
    assert resolve_data_root("data") == checkout / "data"
    monkeypatch.chdir(checkout)  # where the command line runs
    assert resolve_data_root("data") == checkout / "data"
    monkeypatch.chdir(tmp_path)  # outside a checkout: the working directory
    assert resolve_data_root("data") == tmp_path / "data"
    assert resolve_data_root(checkout / "elsewhere") == checkout / "elsewhere"


# --------------------------------------------------------------------------------------------------
# The hub


def test_a_broken_hub_file_is_one_sentence_and_the_next_run_downloads_it_again(server, tmp_path):
    name = "test_resnet.r160_in1k"
    good, state = hub_weights(name, seed=1)
    server.serve_hub_file(hub_repo(name), "model.safetensors", b"this is not a state dict", good)
    code = (
        "from meal_lite import ModelError\n"
        "from meal_lite.models import create_model\n"
        f"try:\n    create_model({name!r}, pretrained=True)\n"
        "except ModelError as exc:\n    print('FIRST', exc)\n"
        f"model = create_model({name!r}, pretrained=True)\n"
        "print('SECOND', float(sum(v.double().sum() for v in model.state_dict().values() if v.is_floating_point())))\n"
    )
    result = _run(["-c", code], _env(tmp_path, server), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    first = re.search(r"^FIRST (.*)$", result.stdout, re.M).group(1)
    assert first.startswith(f"Could not load pretrained weights for '{name}'") and "removed from the cache" in first
    second = float(re.search(r"^SECOND (\S+)$", result.stdout, re.M).group(1))
    assert second == pytest.approx(float(sum(v.double().sum() for v in state.values() if v.is_floating_point())))
    assert _downloads(server) == 4  # HEAD and GET of the broken file, then of the good one


# --------------------------------------------------------------------------------------------------
# The imagenette profile end to end: train, resume, eval, cache


def _overrides(data: Path, out: Path) -> list[str]:
    return [f"data.root={data}", "data.image_size=32", "data.batch_size=16", "data.num_workers=0",
            f"teachers=[{', '.join(TEACHERS)}]", "train.epochs=1", "train.device=cpu", "train.progress=false",
            f"train.out={out}", "optim.milestones=[1]"]


@pytest.fixture(scope="module")
def trained(archive, tmp_path_factory):
    """One `meal-lite train` under the imagenette profile: it downloads the archive and three models."""
    home = tmp_path_factory.mktemp("standin-home")
    with StandInServer() as server:
        server.serve(ARCHIVE, archive)
        for name in (STUDENT, *TEACHERS):
            server.serve_hub_file(hub_repo(name), "model.safetensors", hub_weights(name)[0])
        env = _env(home, server, md5(archive))
        data, out = home / "data", home / "run"
        result = _run(["-m", "meal_lite.cli", "train", *_overrides(data, out)], env, home)
        yield SimpleNamespace(server=server, env=env, home=home, data=data, out=out, result=result,
                              downloads=_downloads(server))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_downloads_the_data_and_the_models(trained):
    result = trained.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "profile: imagenette" in result.stdout and "Traceback" not in result.stderr
    fetched = {path for method, path in trained.server.requests if method == "GET"}
    assert ARCHIVE in fetched
    for name in (STUDENT, *TEACHERS):
        assert f"/{hub_repo(name)}/resolve/main/model.safetensors" in fetched
    assert sorted(p.name for p in (trained.data / "imagenette2-160" / "val").iterdir())[0] == "n01440764"
    _no_leftovers(trained.data)
    (epoch,) = _metrics(trained.out)
    assert epoch["epoch"] == 1 and 0 <= epoch["val_top1"] <= 100


def test_resume_downloads_nothing(trained):
    before = _downloads(trained.server)
    result = _run(["-m", "meal_lite.cli", "train", *_overrides(trained.data, trained.out), "train.resume=true",
                   "train.epochs=2"], trained.env, trained.home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [m["epoch"] for m in _metrics(trained.out)] == [1, 2]
    assert _downloads(trained.server) == before


def test_eval_scores_the_checkpoint_as_its_run_did(trained):
    """`meal-lite eval` of last.pt reads the run's data settings (32 px here, not resnet18's own 224)."""
    before = _downloads(trained.server)
    result = _run(["-m", "meal_lite.cli", "eval", "--weights", str(trained.out / "last.pt"), "--num-workers", "0",
                   "--device", "cpu"], trained.env, trained.home)
    assert result.returncode == 0, result.stderr[-3000:]
    last = _metrics(trained.out)[-1]
    assert f"{STUDENT} on imagenette val at 32 px: top-1 {last['val_top1']:.2f}%" in result.stdout, result.stdout
    # the run's validation split: the first of the two val images of each class (data.val_per_class)
    assert "(10 images)" in result.stdout and _downloads(trained.server) == before


def test_cache_downloads_nothing(trained):
    before = _downloads(trained.server)
    cache = trained.home / "cache"
    result = _run(["-m", "meal_lite.cli", "cache", *_overrides(trained.data, trained.home / "unused"),
                   f"soft_labels.path={cache}", "soft_labels.crops=2", "discriminator.input=probs"],
                  trained.env, trained.home)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] and manifest["records"] == 30 * 2
    assert [t["name"] for t in manifest["identity"]["teachers"]] == list(TEACHERS)
    assert _downloads(trained.server) == before


def test_offline_demo_fails_in_one_line_before_any_worker(tmp_path):
    """No network: the main process says so in one sentence; no worker starts, so none prints a traceback."""
    env = _env(tmp_path, HF_HUB_OFFLINE="1")
    result = _run(["-m", "meal_lite.cli", "demo", "--out", str(tmp_path / "demo"), "--workers", "2",
                   f"data.root={tmp_path / 'data'}"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Pretrained weights for 'resnet18'"), result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "demo").exists()


# --------------------------------------------------------------------------------------------------
# Chapters 2 and 6 on ImageNette


@pytest.fixture(scope="module")
def small_imagenette(tmp_path_factory):
    """An imagenette-profile Experiment on 20 training images: local random-weight teachers, 32 px."""
    folder = tmp_path_factory.mktemp("small-imagenette")
    root = make_fake_imagenette(folder / "data", n_train=2, n_val=2)  # the profile splits val into val and test
    teachers = []
    for name in ("resnet10t", "test_resnet"):
        torch.manual_seed(0)
        path = folder / f"{name}.pth"
        torch.save(timm.create_model(name, num_classes=1000).state_dict(), path)
        teachers.append(f"{{name: {name}, pretrained: false, weights: '{path}'}}")
    cfg = base_config("imagenette", [
        f"data.root='{root}'", "data.image_size=32", "data.batch_size=8", "data.num_workers=0", "data.download=false",
        "student.name=test_resnet", "student.pretrained=false", f"teachers=[{', '.join(teachers)}]", "train.device=cpu",
    ])
    return Experiment(cfg, verbose=False)


def _cell(notebook: str, marker: str) -> str:
    cells = json.loads((REPO / "book" / notebook).read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and marker in "".join(c["source"])]
    return source


def test_every_nth_cuts_any_meal_lite_dataset(small_imagenette):
    for dataset in (small_imagenette.datasets["train"], digits_datasets(augment=False)["train"]):
        cut = every_nth(dataset, 3)
        assert type(cut) is type(dataset) and len(cut) == len(range(0, len(dataset), 3))
        assert list(cut.targets) == list(dataset.targets)[::3]
        assert np.array_equal(np.asarray(cut.raw_image(1)), np.asarray(dataset.raw_image(3)))
    with pytest.raises(ConfigError):
        every_nth([1, 2, 3], 2)


def test_chapter6_accuracy_against_crops_on_imagenette(small_imagenette, tmp_path):
    report = accuracy_vs_crops(small_imagenette, crops=(1,), seeds=1, epochs=1, every=2, cache_root=tmp_path)
    assert report["settings"]["train_images"] == 10 and set(report["rows"]) == {"online", "R=1"}


def test_chapter6_step_rates_on_a_small_split(small_imagenette, capsys):
    """The chapter's step-rate cell times 5 batches per arm; this split has 3 (20 images, batch 8)."""
    assert len(small_imagenette.datasets["train"]) == 20
    namespace = {"runner": small_imagenette, "cfg": small_imagenette.cfg, "PROFILE": "imagenette"}
    exec(_cell("06_cached_soft_labels.ipynb", "import ipywidgets as widgets"), namespace)  # the imports cell
    exec(_cell("06_cached_soft_labels.ipynb", "def step_rates("), namespace)
    assert namespace["online_ratio"] > 0 and "one online MEAL V2 step" in capsys.readouterr().out


@pytest.mark.parametrize("profile", ["imagenette", "offline"])
@pytest.mark.parametrize("teachers", ["untrained", "trained"])
def test_chapter2_asserts_the_diagonal_only_for_trained_teachers(profile, teachers, capsys):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    labels = torch.arange(10).repeat(3)
    probs = torch.from_numpy(rng.dirichlet(np.ones(10), size=30)).float()  # random teachers: diagonal ~ 0.1
    if teachers == "trained":
        probs = 0.1 * probs + 0.9 * torch.nn.functional.one_hot(labels, 10).float()
    namespace = {"np": np, "torch": torch, "plt": plt, "ens_probs": probs, "labels": labels, "PROFILE": profile,
                 "runner": SimpleNamespace(datasets=SimpleNamespace(class_names=[f"class {c}" for c in range(10)]))}
    source = _cell("02_ensemble.ipynb", "similarity = torch.stack")
    diagonal = torch.stack([probs[labels == c].mean(0) for c in range(10)]).numpy().diagonal()
    try:
        if profile == "offline" and teachers == "untrained":
            with pytest.raises(AssertionError):
                exec(source, namespace)
            return
        exec(source, namespace)
    finally:
        plt.close("all")
    rows = int((diagonal > 0.5).sum())
    assert rows == (10 if teachers == "trained" else 0)
    assert f"more than half of its row's mass in {rows} of 10 rows" in capsys.readouterr().out
