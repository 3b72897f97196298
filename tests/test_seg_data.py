"""Segmentation loaders on small files written in their layouts, the composite canvases, and the
errors for folders in the wrong layout or labels out of range."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddad_fast.data import DataError, DatasetInfo, dataset_task, load_dataset, seg_augment
from ddad_fast.data.composite import INK, compose

SIZE = 16


def _write_pair(image_path: Path, label_path: Path, labels: np.ndarray, seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(image_path)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(label_path)


def _labels(values: list[int]) -> np.ndarray:
    """A (SIZE, SIZE) map cycling through ``values``."""
    return np.resize(np.array(values), (SIZE, SIZE))


def _camvid(root: Path, test_values: list[int]) -> Path:
    for split, values in (("train", [0, 5, 10, 11]), ("test", test_values)):
        for i in range(2):
            name = f"0001TP_{i:06d}.png"
            _write_pair(root / split / name, root / f"{split}annot" / name, _labels(values), i)
    return root


def _nyuv2(root: Path, test_values: list[int]) -> Path:
    for split, values in (("train", [0, 12, 255]), ("test", test_values)):
        for i in range(3):
            name = f"{i:04d}.png"
            _write_pair(root / "image" / split / name, root / "seg13" / split / name,
                        _labels(values), i)  # fmt: skip
    return root


def test_camvid_loads_the_segnet_layout_and_ignores_void(tmp_path):
    root = _camvid(tmp_path, [1, 11])
    train, test, info = load_dataset("camvid", root, SIZE)
    assert (info.num_classes, info.in_channels, info.ignore_index) == (11, 3, 255)
    images, labels = train.tensors
    assert images.shape == (2, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert labels.shape == (2, SIZE, SIZE) and labels.dtype == torch.int64
    want = torch.from_numpy(_labels([0, 5, 10, 11])).long()
    want[want == 11] = 255  # void
    assert torch.equal(labels[0], want)
    assert set(test.tensors[1].unique().tolist()) == {1, 255}
    assert dataset_task("camvid") == "seg"


def test_nyuv2_loads_image_and_seg13_folders(tmp_path):
    train, test, info = load_dataset("nyuv2", _nyuv2(tmp_path, [3, 255]), SIZE)
    assert (info.num_classes, info.ignore_index) == (13, 255)
    assert train.tensors[0].shape == (3, 3, SIZE, SIZE)
    assert torch.equal(train.tensors[1][1], torch.from_numpy(_labels([0, 12, 255])).long())
    assert set(test.tensors[1].unique().tolist()) == {3, 255}


def test_images_are_resized_and_labels_keep_their_values(tmp_path):
    train, _, _ = load_dataset("camvid", _camvid(tmp_path, [2]), 8)
    assert train.tensors[0].shape == (2, 3, 8, 8)
    assert set(train.tensors[1].unique().tolist()) <= {0, 5, 10, 255}


def test_camvid_without_trainannot_is_refused(tmp_path):
    root = _camvid(tmp_path, [1])
    for f in (root / "trainannot").iterdir():
        f.unlink()
    (root / "trainannot").rmdir()
    with pytest.raises(DataError, match=r"camvid: expected .*SegNet layout.* has no trainannot"):
        load_dataset("camvid", root, SIZE)


@pytest.mark.parametrize(
    ("name", "writer", "bad"), [("camvid", _camvid, 12), ("nyuv2", _nyuv2, 13)]
)
def test_a_label_out_of_range_is_refused_naming_the_file(tmp_path, name, writer, bad):
    root = writer(tmp_path, [0, bad])
    with pytest.raises(DataError, match=rf"{name}: label map .*\.png has value {bad}; expected"):
        load_dataset(name, root, SIZE)


def test_an_image_without_its_label_map_is_refused(tmp_path):
    root = _camvid(tmp_path, [1])
    (root / "testannot" / "0001TP_000001.png").unlink()
    with pytest.raises(DataError, match="has no label map"):
        load_dataset("camvid", root, SIZE)


def test_an_rgb_label_map_is_refused(tmp_path):
    root = _nyuv2(tmp_path, [1])
    Image.new("RGB", (SIZE, SIZE)).save(root / "seg13" / "test" / "0000.png")
    with pytest.raises(DataError, match="expected one channel of class indices"):
        load_dataset("nyuv2", root, SIZE)


def test_compose_labels_item_class_plus_one_exactly_on_ink():
    items = torch.zeros(2, 1, 4, 4)
    items[0, 0, 1:3, 1:3] = 1.0  # class 3: ink on a 2x2 square
    items[1, 0, 0, :] = 0.8  # class 7: ink on the top row
    items[1, 0, 3, :] = INK / 2  # faint pixels: drawn but not ink
    labels = torch.tensor([3, 7])
    rng = np.random.default_rng(0)
    images, maps = compose(items, labels, 20, 8, rng)
    assert images.shape == (20, 1, 8, 8) and maps.shape == (20, 8, 8)
    assert set(maps.unique().tolist()) <= {0, 4, 8}
    assert torch.equal(maps > 0, images[:, 0] > INK)  # labelled exactly where there is ink
    assert ((images[:, 0] >= 0.8) == (maps > 0)).all()
    again = compose(items, labels, 20, 8, np.random.default_rng(0))
    assert torch.equal(again[0], images) and torch.equal(again[1], maps)  # deterministic


def test_seg_augment_flips_images_and_labels_together():
    info = DatasetInfo("t", 3, 1, 4, (0.0,), (1.0,), hflip=True, ignore_index=255)
    images = torch.arange(32.0).view(2, 1, 4, 4)
    labels = images[:, 0].long()
    out_images, out_labels = seg_augment(images, labels, info, torch.Generator().manual_seed(0))
    assert torch.equal(out_images[:, 0].long(), out_labels)  # flipped together, or neither
    flipped = [not torch.equal(out_images[i], images[i]) for i in range(2)]
    assert all(torch.equal(out_images[i], images[i].flip(-1)) for i in range(2) if flipped[i])


def test_the_composite_default_builds_labelled_canvases_from_real_digits(monkeypatch):
    from ddad_fast.data import composite

    monkeypatch.setattr(composite, "TRAIN_CANVASES", 12)
    monkeypatch.setattr(composite, "TEST_CANVASES", 6)
    train, test, info = load_dataset("composite-digits", image_size=32)
    assert (info.num_classes, info.in_channels, info.image_size) == (11, 1, 32)
    assert train.tensors[0].shape == (12, 1, 32, 32) and test.tensors[1].shape == (6, 32, 32)
    assert train.tensors[1].min() >= 0 and train.tensors[1].max() <= 10
    assert (train.tensors[1] > 0).any() and dataset_task("composite-digits") == "seg"
    again, _, _ = load_dataset("composite-digits", image_size=32)
    assert torch.equal(again.tensors[0], train.tensors[0])
