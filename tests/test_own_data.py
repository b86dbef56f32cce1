"""Your own data: any image folder, teachers fine-tuned on it, a student distilled from them, exported and used.

The folder dataset and every bad input it refuses; the recipe of the README ("fine-tune two teachers
with cross-entropy, then boost the student with them by path") through the command line; the export
loaded back by plain timm with the student's exact logits; ONNX Runtime against the student; predict
on a run folder and on an exported folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import timm.data
import torch
from PIL import Image

from meal_lite.checkpoint import load_checkpoint, save_checkpoint
from meal_lite.cli import main
from meal_lite.config import DataConfig, ModelConfig, TeacherConfig
from meal_lite.data import build_datasets, dataset_class_names, dataset_num_classes
from meal_lite.errors import ConfigError, DataError
from meal_lite.models import create_student, create_teacher
from meal_lite.training import load_predictor, load_trained_student, missing_onnx_packages, predict_images

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny: one thread is as fast as two, and cannot stall when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COLOURS = {"blue": (40, 60, 210), "green": (40, 190, 60), "red": (210, 50, 40)}


def make_folder(root: Path, n_train: int = 6, n_val: int = 3, classes=COLOURS, seed: int = 0) -> Path:
    """A folder dataset of flat-coloured noisy images of varied sizes and formats, one colour per class."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(18, 48)), int(rng.integers(18, 48))
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def plain(config: dict) -> dict:
    """A data config with its sequences as tuples (JSON gives lists)."""
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}


def one_sentence(text: str) -> bool:
    return "\n" not in text.strip() and text.strip().endswith(".") and "Traceback" not in text


# --------------------------------------------------------------------------------------------------
# The folder dataset


def test_a_folder_is_a_dataset_whose_classes_are_its_folders(tmp_path):
    root = make_folder(tmp_path / "colours")
    (root / "train" / "red" / ".DS_Store").write_bytes(b"\0junk")  # hidden: ignored
    (root / "val" / ".ipynb_checkpoints").mkdir()  # a hidden folder is not a class
    data = DataConfig(dataset="folder", root=str(root), image_size=24, augment=False)
    splits = build_datasets(data, {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.25,) * 3})
    assert splits.num_classes == dataset_num_classes("folder", root) == 3
    assert splits.class_names == dataset_class_names(data) == ("blue", "green", "red")
    assert splits.data_config["input_size"] == (3, 24, 24)  # data.image_size replaces the model's size
    assert [len(splits["train"]), len(splits["val"])] == [18, 9]
    assert sorted(set(splits["val"].targets)) == [0, 1, 2]
    image, label = splits["val"][0]
    assert image.shape == (3, 24, 24) and label == 0
    # the class count reaches the student: student.num_classes may repeat it, not contradict it
    model, _ = create_student(ModelConfig(name="resnet10t", pretrained=False, num_classes=3), data)
    assert model.num_classes == 3
    with pytest.raises(ConfigError, match="student.num_classes=4 but the folder data has 3 classes"):
        create_student(ModelConfig(name="resnet10t", pretrained=False, num_classes=4), data)


def _empty_class(root):
    for f in (root / "val" / "green").iterdir():
        f.unlink()
    return "'" + str(root / "val" / "green") + "' holds no readable image"


def _class_sets_differ(root):
    (root / "train" / "red").rename(root / "train" / "crimson")
    return "only in train: crimson; only in val: red"


def _not_an_image(root):
    (root / "train" / "blue" / "notes.txt").write_text("not an image")
    return f"'{root / 'train' / 'blue' / 'notes.txt'}' is not an image file"


def _unreadable_image(root):
    (root / "val" / "red" / "broken.png").write_bytes(b"this is no PNG")
    return f"'{root / 'val' / 'red' / 'broken.png'}' cannot be read as an image"


def _one_class(root):
    for split in ("train", "val"):
        for name in ("blue", "green"):
            for f in (root / split / name).iterdir():
                f.unlink()
            (root / split / name).rmdir()
    return "holds 1 class folder(s) (red) but a classifier needs at least two"


def _no_val(root):
    for f in (root / "val").rglob("*.*"):
        f.unlink()
    for d in sorted((root / "val").iterdir()):
        d.rmdir()
    (root / "val").rmdir()
    return "has no 'val' folder"


@pytest.mark.parametrize(
    "spoil", [_empty_class, _class_sets_differ, _not_an_image, _unreadable_image, _one_class, _no_val], ids=lambda f: f.__name__[1:]
)
def test_a_bad_folder_is_refused_in_one_sentence_before_anything_is_written(tmp_path, spoil, capsys):
    root = make_folder(tmp_path / "colours", n_train=2, n_val=2)
    expected = spoil(root)
    data = DataConfig(dataset="folder", root=str(root), image_size=24)
    with pytest.raises(DataError) as caught:
        build_datasets(data)
    assert expected in str(caught.value), str(caught.value)
    assert one_sentence(str(caught.value))
    # the same through the command line: exit 2, one line, no run folder
    out = tmp_path / "run"
    code = main(["train", "data.dataset=folder", f"data.root={root}", "data.image_size=24", "student.name=resnet10t",
                 "student.pretrained=false", "loss.objective=ce", f"train.out={out}", "train.device=cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_skip_bad_files_leaves_out_what_cannot_be_read_and_names_it(tmp_path):
    root = make_folder(tmp_path / "colours", n_train=2, n_val=2)
    (root / "train" / "blue" / "notes.txt").write_text("not an image")
    (root / "train" / "red" / "broken.jpg").write_bytes(b"no JPEG")
    data = DataConfig(dataset="folder", root=str(root), image_size=24, skip_bad_files=True)
    with pytest.warns(RuntimeWarning) as warned:
        splits = build_datasets(data)
    named = " ".join(str(w.message) for w in warned)
    assert "notes.txt" in named and "broken.jpg" in named
    assert len(splits["train"]) == 6  # the two bad files are not samples


def test_an_image_truncated_after_its_header_is_named_when_read_or_skipped(tmp_path):
    """The header check lets it through; the shared image reader of the ImageNet folders names or skips it."""
    root = make_folder(tmp_path / "colours", n_train=2, n_val=2)
    truncated = root / "val" / "blue" / "1.png"  # the second val image (index 1)
    truncated.write_bytes(truncated.read_bytes()[:60])  # its header survives, its pixel data does not
    strict = build_datasets(DataConfig(dataset="folder", root=str(root), image_size=24))["val"]
    with pytest.raises(DataError, match=re.escape(str(truncated))):
        strict[1]
    lenient = build_datasets(DataConfig(dataset="folder", root=str(root), image_size=24, skip_bad_files=True))["val"]
    with pytest.warns(RuntimeWarning, match="Skipping an unreadable image"):
        image, label = lenient[1]
    assert image.shape == (3, 24, 24) and label == 1  # the next image of the split (green/0.jpg) stands in


# --------------------------------------------------------------------------------------------------
# The recipe: fine-tune two teachers (cross-entropy), boost a student with them by path, export, predict


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Two teachers fine-tuned at different sizes, then a MEAL V2 student taught by them, all through ``main``."""
    work = tmp_path_factory.mktemp("own-data")
    root = make_folder(work / "colours")
    config = work / "folder.yaml"
    config.write_text(
        "profile: offline\n"
        f"data: {{dataset: folder, root: '{root}', image_size: 32, batch_size: 9, num_workers: 0}}\n"
        "student: {name: resnet10t, pretrained: false}\n"
        "optim: {lr: 0.02, milestones: [10]}\n"
        "train: {epochs: 2, device: cpu, progress: false}\n"
    )
    runs = work / "runs"
    codes = [
        main(["train", str(config), "loss.objective=ce", f"train.out={runs / 't1'}"]),
        main(["train", str(config), "loss.objective=ce", "student.name=regnetx_002", "data.image_size=40",
              f"train.out={runs / 't2'}"]),
        main(["train", str(config), "loss.objective=meal", "train.epochs=1", f"train.out={runs / 'student'}",
              f"teachers=[{{name: resnet10t, weights: '{runs / 't1' / 'last.pt'}'}}, "
              f"{{name: regnetx_002, weights: '{runs / 't2' / 'last.pt'}'}}]"]),
    ]
    return {"root": root, "config": config, "runs": runs, "codes": codes, "work": work}


def test_teachers_fine_tuned_on_the_folder_teach_a_student_by_path(recipe):
    assert recipe["codes"] == [0, 0, 0]
    runs = recipe["runs"]
    state = load_checkpoint(runs / "student" / "last.pt")
    assert state["config"]["loss"]["objective"] == "meal" and state["discriminator"] is not None
    assert [t["weights"] for t in state["config"]["teachers"]] == [str(runs / "t1" / "last.pt"), str(runs / "t2" / "last.pt")]
    # each teacher by path keeps the preprocessing of the run that trained it (40 px for the second)
    for name, run, size in (("resnet10t", "t1", 32), ("regnetx_002", "t2", 40)):
        model, config = create_teacher(TeacherConfig(name=name, weights=str(runs / run / "last.pt")), dataset="folder", num_classes=3)
        assert config["input_size"] == (3, size, size) and model.num_classes == 3


@pytest.fixture(scope="module")
def exported(recipe):
    out = recipe["work"] / "export"
    code = main(["export", str(recipe["runs"] / "student"), "--out", str(out)] + (["--onnx"] if not missing_onnx_packages() else []))
    return out, code


def test_the_export_is_a_timm_hub_folder_that_gives_the_students_logits(recipe, exported):
    out, code = exported
    assert code == 0
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet10t" and config["num_classes"] == 3
    assert config["label_names"] == ["blue", "green", "red"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    student = load_trained_student(recipe["runs"] / "student")
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert plain(timm.data.resolve_model_data_config(model)) == plain(student.data_config)
    val = build_datasets(student.config.data, student.data_config)["val"]
    batch = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        assert torch.equal(model(batch), student.model(batch))


def test_the_onnx_file_agrees_with_the_student_under_onnx_runtime(recipe, exported, capsys):
    missing = missing_onnx_packages()
    if missing:
        pytest.skip(f"the [onnx] extra is not installed (missing {', '.join(missing)}): pip install 'meal-lite[onnx]'")
    import onnxruntime

    out, code = exported
    assert code == 0 and (out / "model.onnx").is_file()
    student = load_trained_student(recipe["runs"] / "student")
    val = build_datasets(student.config.data, student.data_config)["val"]
    batch = torch.stack([val[i][0] for i in range(len(val))])
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"images": batch.numpy()})[0])
    with torch.no_grad():
        expected = student.model(batch)
    diff = (got - expected).abs().max().item()
    assert diff <= 1e-3 * (1 + expected.abs().max().item())  # float rounding, not another function
    # wherever the student's top two logits are further apart than twice the difference, the classes agree
    top2 = expected.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * diff
    assert torch.equal(got.argmax(1)[clear], expected.argmax(1)[clear])


def test_predict_names_the_top_classes_the_same_from_the_run_and_from_the_export(recipe, exported, capsys):
    out, _ = exported
    images = [recipe["root"] / "val" / "red" / "0.jpg", recipe["root"] / "val" / "blue" / "1.png"]
    from_export = predict_images(load_predictor(out), images)
    from_run = predict_images(load_predictor(recipe["runs"] / "student"), images)
    assert from_export == from_run  # same weights, same eval transform: the same numbers
    assert [len(ranked) for ranked in from_export] == [3, 3]  # top-5 of three classes is all three
    for ranked in from_export:
        assert {name for name, _ in ranked} == set(COLOURS)
        assert abs(sum(p for _, p in ranked) - 1) < 1e-5 and [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    capsys.readouterr()
    assert main(["predict", str(out), *map(str, images), "--top", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(images[0]) and printed[1].startswith("  1. " + from_export[0][0][0])
    assert len(printed) == 6 and printed[2].startswith("  2. ")


def test_export_refuses_what_it_cannot_export_and_writes_nothing(recipe, tmp_path, capsys):
    runs = recipe["runs"]
    (tmp_path / "empty-run").mkdir()
    # a checkpoint that does not match its config: the config says another student architecture
    state = load_checkpoint(runs / "t1" / "last.pt")
    state["config"]["student"]["name"] = "regnetx_002"
    save_checkpoint(state, tmp_path / "mismatch" / "last.pt")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    for run, out, words in [
        (tmp_path / "empty-run", tmp_path / "e1", "holds no student checkpoint (last.pt)"),
        (tmp_path / "mismatch", tmp_path / "e2", "does not match its run's configuration (a regnetx_002 for 3 folder classes"),
        (runs / "t1", busy, "already exists and is not empty"),
    ]:
        assert main(["export", str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
        assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left behind
