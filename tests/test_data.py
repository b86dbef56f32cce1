"""Datasets, transforms and loaders (meal_lite.data.datasets, .digits, .imagefolders, .transforms, .loaders): errors too."""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch

from fake_data import make_fake_imagenet, make_fake_imagenette, write_not_an_image, write_truncated_jpeg
from meal_lite.data import datasets as D
from meal_lite.data import digits
from meal_lite.data import imagefolders as IF
from meal_lite.data import loaders as L
from meal_lite.data import transforms as T
from meal_lite.config.schema import DataConfig
from meal_lite.errors import ConfigError, DataError

SMALL_CFG = {
    "input_size": (3, 32, 32),
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


# ------------------------------------------------------------------------------------------------
# ImageNette <-> ImageNet table


def test_imagenette_wnids_indices_and_order():
    # ImageNet-1k indices of ImageNette's ten wnids (their ranks among the sorted 1000 ILSVRC-2012
    # wnids; checked against timm's metadata below), in ImageNette's (sorted wnid) order.
    assert IF.IMAGENETTE_IMAGENET_INDICES == (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)
    assert list(IF.IMAGENETTE_WNIDS) == sorted(IF.IMAGENETTE_WNIDS)
    assert len(IF.IMAGENETTE_WNIDS) == len(IF.IMAGENETTE_CLASSES) == 10
    assert IF.IMAGENETTE_CLASSES[0] == "tench" and IF.IMAGENETTE_CLASSES[-1] == "parachute"


def test_table_agrees_with_timm_imagenet_metadata():
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = info.label_names()
    for wnid, index in IF.IMAGENET_INDEX_OF_WNID.items():
        assert names.index(wnid) == index, wnid
    assert "parachute" in info.index_to_description(701)


def test_table_agrees_with_torchvision_imagenette():
    from torchvision.datasets import Imagenette

    assert tuple(sorted(Imagenette._WNID_TO_CLASS)) == IF.IMAGENETTE_WNIDS


def test_imagenet_indices_unknown_wnid():
    with pytest.raises(DataError, match="n99999999"):
        IF.imagenet_indices(["n99999999"])


# ------------------------------------------------------------------------------------------------
# Digits


def test_digits_split_is_fixed_and_stratified():
    splits = digits.digits_datasets(augment=False)
    assert tuple(len(splits[k]) for k in ("train", "val", "test")) == digits.DIGITS_SPLIT == (1097, 200, 500)
    idx = {k: set(v.indices.tolist()) for k, v in splits.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert len(idx["train"] | idx["val"] | idx["test"]) == 1797
    counts = np.bincount(splits["val"].targets, minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21
    # Pinned: the split must never change (it would silently change every number in the book).
    assert splits["test"].indices[:6].tolist() == [3, 5, 7, 13, 16, 19]
    assert splits["val"].indices[:6].tolist() == [9, 18, 20, 23, 31, 33]
    assert int(splits["test"].indices.sum()) == 435902


def test_digits_tensors_and_normalisation():
    ds = digits.DigitsDataset("train", image_size=32)
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    batch = torch.stack([ds[i][0] for i in range(len(ds))])
    assert abs(batch.mean().item()) < 0.02 and abs(batch.std().item() - 1) < 0.02
    assert digits.DIGITS_DATA_CONFIG["input_size"] == (1, 32, 32)
    assert digits.DIGITS_DATA_CONFIG["mean"] == (digits.DIGITS_MEAN,) and digits.DIGITS_DATA_CONFIG["std"] == (digits.DIGITS_STD,)
    assert digits.DigitsDataset("val", image_size=16)[0][0].shape == (1, 16, 16)
    with pytest.raises(ConfigError, match="image_size"):
        digits.DigitsDataset("train", image_size=4)


def test_digits_augmentation_follows_global_rng():
    ds = digits.DigitsDataset("train", image_size=32, augment=True)
    torch.manual_seed(123)
    a = ds[5][0]
    torch.manual_seed(123)
    b = ds[5][0]
    torch.manual_seed(124)
    c = ds[5][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = digits.DigitsDataset("train", image_size=32, augment=False)
    assert torch.equal(plain[5][0], plain[5][0])
    assert digits.digits_datasets(augment=True)["val"].augment is None


# ------------------------------------------------------------------------------------------------
# Transforms


def test_build_transforms_paper_recipe():
    train = T.build_transforms(SMALL_CFG, train=True)
    names = [type(t).__name__ for t in train.transforms]
    assert "RandomResizedCropAndInterpolation" in names and "RandomHorizontalFlip" in names
    assert not any("Jitter" in n or "Augment" in n or "Erasing" in n for n in names)
    evaluation = T.build_transforms(SMALL_CFG, train=False)
    names = [type(t).__name__ for t in evaluation.transforms]
    assert names[:2] == ["Resize", "CenterCrop"]


@pytest.mark.parametrize("size,resize", [(224, 256), (380, 434)])
def test_paper_transforms_224_and_380(size, resize):
    cfg = T.paper_data_config(size)
    t = T.build_transforms(cfg, train=False)
    assert t.transforms[0].size == resize and tuple(t.transforms[1].size) == (size, size)


# ------------------------------------------------------------------------------------------------
# ImageNette through torchvision's real Imagenette class


@pytest.fixture()
def imagenette_root(tmp_path):
    return make_fake_imagenette(tmp_path / "data")


def test_imagenette_labels_follow_sorted_wnids(imagenette_root):
    splits = IF.imagenette_datasets(imagenette_root, size="160px", data_config=SMALL_CFG)
    train, val = splits["train"], splits["val"]
    assert len(train) == 30 and len(val) == 20
    assert tuple(train.wnids) == IF.IMAGENETTE_WNIDS
    for path, label in train._samples + val._samples:
        assert label == IF.IMAGENETTE_WNIDS.index(path.split("/")[-2])
    x, y = val[0]
    assert x.shape == (3, 32, 32) and y == 0
    assert torch.equal(val[3][0], val[3][0])  # eval transform is deterministic


def test_build_datasets_imagenette_uses_student_config(imagenette_root):
    import timm

    student_cfg = timm.data.resolve_model_data_config(timm.create_model("test_resnet"))
    cfg = DataConfig(dataset="imagenette", root=str(imagenette_root), image_size=48, num_workers=0)
    splits = D.build_datasets(cfg, student_cfg)
    assert isinstance(splits, D.DatasetSplits) and set(splits) == {"train", "val"}
    assert splits.num_classes == 10 and splits.class_names == IF.IMAGENETTE_CLASSES
    assert splits.data_config["input_size"] == (3, 48, 48)
    assert splits.data_config["mean"] == student_cfg["mean"]  # the student's own normalisation
    assert splits["train"][0][0].shape == (3, 48, 48)
    assert D.data_config_for(cfg, splits.data_config) == splits.data_config  # idempotent


def _closed_port_url(name: str) -> str:
    """An http URL on 127.0.0.1 at a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def test_imagenette_missing_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("MEAL_LITE_IMAGENETTE_URL", _closed_port_url("imagenette2-160.tgz"))  # the probe is refused
    with pytest.raises(DataError) as err:
        IF.imagenette_datasets(tmp_path / "empty", size="160px", data_config=SMALL_CFG)
    msg = str(err.value)
    assert str(tmp_path / "empty" / "imagenette2-160") in msg and "cannot be reached" in msg
    assert "imagenette2-160.tgz" in msg and "MEAL_LITE_PROFILE=offline" in msg
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())


def test_imagenette_download_urlerror_becomes_one_sentence(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "imagenette2-320.tgz"  # a file URL is not probed: urllib itself fails
    monkeypatch.setenv("MEAL_LITE_IMAGENETTE_URL", missing.as_uri())
    with pytest.raises(DataError) as err:
        IF.imagenette_datasets(tmp_path / "d", size="320px", data_config=SMALL_CFG)
    msg = str(err.value)
    assert "could not be downloaded" in msg and "No such file or directory" in msg
    assert str(tmp_path / "d" / "imagenette2-320") in msg and "MEAL_LITE_PROFILE=offline" in msg
    assert "\n" not in msg
    # nothing half-done is left: at most the empty lock file that serialises downloads into this folder
    assert [p.name for p in (tmp_path / "d").iterdir()] in ([], [".imagenette2-320.lock"])


def test_imagenette_missing_with_download_off(tmp_path):
    with pytest.raises(DataError, match="data.download is false") as err:
        IF.imagenette_datasets(tmp_path, size="full", download=False, data_config=SMALL_CFG)
    assert "imagenette2.tgz" in str(err.value) and "MEAL_LITE_PROFILE=offline" in str(err.value)


def test_imagenette_wrong_classes(tmp_path):
    # The classic mix-up: n03888605 (parallel bars) instead of n03888257 (parachute).
    wnids = list(IF.IMAGENETTE_WNIDS[:-1]) + ["n03888605"]
    root = make_fake_imagenette(tmp_path, n_train=1, n_val=1, wnids=wnids)
    with pytest.raises(DataError) as err:
        IF.imagenette_datasets(root, data_config=SMALL_CFG)
    msg = str(err.value)
    assert "missing n03888257" in msg and "unexpected n03888605" in msg and "ten wnids" in msg


def test_imagenette_too_few_classes(tmp_path):
    root = make_fake_imagenette(tmp_path, n_train=1, n_val=1, wnids=IF.IMAGENETTE_WNIDS[:9])
    with pytest.raises(DataError, match="holds 9 class folders"):
        IF.imagenette_datasets(root, data_config=SMALL_CFG)


def test_imagenette_incomplete_folder(tmp_path):
    import shutil

    root = make_fake_imagenette(tmp_path, n_train=1, n_val=1)
    shutil.rmtree(root / "imagenette2-160" / "val")
    with pytest.raises(DataError, match="has no 'val' folder"):
        IF.imagenette_datasets(root, data_config=SMALL_CFG)


@pytest.mark.parametrize("writer", [write_not_an_image, write_truncated_jpeg])
def test_bad_image_is_named_and_stops_the_run(imagenette_root, writer):
    bad = writer(imagenette_root / "imagenette2-160" / "train" / "n01440764" / "n01440764_zz_bad.JPEG")
    train = IF.imagenette_datasets(imagenette_root, data_config=SMALL_CFG)["train"]
    index = [p for p, _ in train._samples].index(str(bad))
    with pytest.raises(DataError) as err:
        train[index]
    msg = str(err.value)
    assert str(bad) in msg and "data.skip_bad_files=true" in msg


def test_bad_image_error_from_a_worker_process_stays_one_sentence(imagenette_root):
    # In the last class folder, so it is the last batch: the worker has nothing left to prefetch and
    # shuts down at once (otherwise DataLoader waits up to 5 s for it).
    bad = write_not_an_image(imagenette_root / "imagenette2-160" / "val" / "n03888257" / "ILSVRC2012_val_zz.JPEG")
    val = IF.imagenette_datasets(imagenette_root, data_config=SMALL_CFG)["val"]
    loader = L.build_loader(val, 4, train=False, num_workers=1)
    batches = iter(loader)
    with pytest.raises(DataError) as err:
        for _ in batches:
            pass
    del batches
    msg = str(err.value)
    assert msg.startswith(f"Cannot read image file '{bad}'") and "\n" not in msg and "Traceback" not in msg


def test_bad_image_skipped_when_asked(imagenette_root):
    bad = write_not_an_image(imagenette_root / "imagenette2-160" / "train" / "n01440764" / "n01440764_zz_bad.JPEG")
    train = IF.imagenette_datasets(imagenette_root, data_config=SMALL_CFG, skip_bad_files=True)["train"]
    index = [p for p, _ in train._samples].index(str(bad))
    with pytest.warns(RuntimeWarning, match="n01440764_zz_bad"):
        x, y = train[index]
    assert x.shape == (3, 32, 32)
    loader = L.build_loader(train, 8, train=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert sum(len(b[1]) for b in loader) == 24  # 31 samples, drop_last, the bad one replaced


# ------------------------------------------------------------------------------------------------
# ImageNet ImageFolder


def test_imagenet_folder_1000_classes(tmp_path):
    root = make_fake_imagenet(tmp_path / "imagenet")
    splits = IF.imagenet_datasets(root, data_config=SMALL_CFG)
    val = splits["val"]
    assert len(val.classes) == 1000 and len(val) == 1000
    assert val.class_to_idx["n01440764"] == 0 and val.class_to_idx["n03888257"] == 701
    x, y = val[701]
    assert x.shape == (3, 32, 32) and y == 701
    cfg = DataConfig(dataset="imagenet", root=str(root), image_size=380)
    assert D.data_config_for(cfg, SMALL_CFG) == T.paper_data_config(380, SMALL_CFG["mean"], SMALL_CFG["std"])


def test_imagenet_wrong_classes_and_missing(tmp_path):
    from fake_data import imagenet_wnids

    root = make_fake_imagenet(tmp_path / "in", wnids=imagenet_wnids()[:999])
    with pytest.raises(DataError, match="holds 999 class folders .*missing n15075141"):
        IF.imagenet_datasets(root, data_config=SMALL_CFG)
    with pytest.raises(DataError, match="image-net.org"):
        IF.imagenet_datasets(tmp_path / "nothing", data_config=SMALL_CFG)


def test_dataset_num_classes():
    assert D.dataset_num_classes("digits") == 10 and D.dataset_num_classes("imagenet") == 1000
    with pytest.raises(ConfigError, match="imagenette"):
        D.dataset_num_classes("cifar")


# ------------------------------------------------------------------------------------------------
# Samplers and loaders


def test_epoch_sampler_depends_on_seed_and_epoch_only():
    s = L.EpochSampler(100, shuffle=True, seed=3)
    rng_before = torch.get_rng_state()
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert list(s) == a and a != b and sorted(a) == list(range(100))
    assert torch.equal(torch.get_rng_state(), rng_before)  # never touches the global RNG
    other = L.EpochSampler(100, shuffle=True, seed=4)
    other.set_epoch(0)
    assert list(other) != a
    shifted = L.EpochSampler(100, shuffle=True, seed=2)
    shifted.set_epoch(1)
    assert list(shifted) != a  # (seed 2, epoch 1) is not (seed 3, epoch 0)
    assert list(L.EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_build_loader_single_process_is_reproducible():
    ds = digits.DigitsDataset("val", image_size=8)
    orders = []
    for _ in range(2):
        loader = L.build_loader(ds, 16, train=True, seed=7)
        assert isinstance(loader.sampler, L.EpochSampler) and hasattr(loader.sampler, "set_epoch")
        L.set_loader_epoch(loader, 2)
        orders.append(torch.cat([y for _, y in loader]))
    assert torch.equal(orders[0], orders[1]) and len(orders[0]) == 192  # drop_last for training
    evaluation = L.build_loader(ds, 16, train=False)
    assert torch.cat([y for _, y in evaluation]).tolist() == ds.targets  # in order, nothing dropped
    tiny = L.build_loader(torch.utils.data.Subset(ds, range(5)), 16, train=True)
    assert sum(len(y) for _, y in tiny) == 5  # drop_last would leave nothing: kept


def test_build_loader_distributed():
    ds = digits.DigitsDataset("val", image_size=8)
    train = [L.build_loader(ds, 10, train=True, distributed=True, rank=r, world_size=3, seed=1) for r in range(3)]
    assert all(isinstance(l.sampler, L.EpochSampler) and l.sampler.pad for l in train)
    for l in train:
        l.sampler.set_epoch(4)
    seen = [i for l in train for i in l.sampler]
    assert set(seen) == set(range(200)) and len(seen) == 201  # padded to a multiple of 3
    assert all(len(list(l.sampler)) == len(l.sampler) == 67 for l in train)
    one = L.build_loader(ds, 30, train=True, seed=1).sampler
    one.set_epoch(4)
    order = list(one)
    assert [list(l.sampler) for l in train] == [(order + order[:1])[r::3] for r in range(3)]  # shares of ONE order
    evaluation = [L.build_loader(ds, 10, train=False, distributed=True, rank=r, world_size=3) for r in range(3)]
    shards = [list(l.sampler) for l in evaluation]
    assert sorted(i for s in shards for i in s) == list(range(200))  # each image exactly once, no padding


def test_seeded_views_depend_on_seed_epoch_and_index_only():
    ds = digits.DigitsDataset("train", image_size=16, augment=True)
    views = L.SeededViews(ds, seed=5)
    a = views.view(3, epoch=0)[0]
    torch.manual_seed(999)  # the caller's RNG does not matter
    assert torch.equal(views.view(3, epoch=0)[0], a)
    torch.manual_seed(0)
    assert not torch.equal(views.view(3, epoch=1)[0], a)  # a new view each epoch
    assert not torch.equal(L.SeededViews(ds, seed=6).view(3, epoch=0)[0], a)  # and each seed
    assert views.targets == ds.targets  # the wrapped dataset's attributes show through
    torch.manual_seed(0)
    rng_before = torch.get_rng_state()
    views.view(4, epoch=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's streams are left as they were


def test_training_views_are_the_same_with_workers_and_across_processes():
    ds = digits.DigitsDataset("val", image_size=16, augment=True)

    def by_index(loaders):
        seen = {}
        for loader in loaders:
            L.set_loader_epoch(loader, 3)
            order = list(loader.sampler)
            batches = [x for x, _ in loader]
            for i, image in zip(order, torch.cat(batches)):
                seen[i] = image
        return seen

    one = by_index([L.build_loader(ds, 20, train=True, seed=2)])
    workers = by_index([L.build_loader(ds, 20, train=True, seed=2, num_workers=2)])
    ranks = by_index([L.build_loader(ds, 10, train=True, seed=2, distributed=True, rank=r, world_size=2) for r in range(2)])
    assert set(one) == set(workers) and len(one) == 200
    for i, image in one.items():
        assert torch.equal(workers[i], image), i
        if i in ranks:
            assert torch.equal(ranks[i], image), i
