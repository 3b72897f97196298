"""Segmentation loaders on small files written in their layouts, resized as DFAD does (shorter
side 256, aspect kept, labels nearest, pixels normalised to [-1, 1]), the composite canvases, and
the errors for folders in the wrong layout, labels out of range or images of mixed sizes."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddad_fast.batching import iterate_batches
from ddad_fast.data import DataError, dataset_task, load_dataset, seg_augment
from ddad_fast.data.composite import INK, compose
from ddad_fast.data.seg_folders import resized_size

SIZE = 16  # square fixtures: resized 16x16 -> 256x256, each pixel repeated 16 times
WIDE = (24, 18)  # (width, height) of CamVid's 4:3 frames, scaled down: resized to 341x256


def _write_pair(
    image_path: Path, label_path: Path, labels: np.ndarray, seed: int, rgb: np.ndarray | None = None
) -> None:
    h, w = labels.shape
    if rgb is None:
        rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(image_path)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(label_path)


def _labels(values: list[int], size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A (height, width) map cycling through ``values``; ``size`` is (width, height)."""
    return np.resize(np.array(values), size[::-1])


def _camvid(root: Path, test_values: list[int], size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    for split, values in (("train", [0, 5, 10, 11]), ("test", test_values)):
        for i in range(2):
            name = f"0001TP_{i:06d}.png"
            pair = root / split / name, root / f"{split}annot" / name
            _write_pair(*pair, _labels(values, size), i)
    return root


def _nyuv2(root: Path, test_values: list[int]) -> Path:
    for split, values in (("train", [0, 12, 255]), ("test", test_values)):
        for i in range(3):
            name = f"{i:04d}.png"
            _write_pair(root / "image" / split / name, root / "seg13" / split / name,
                        _labels(values), i)  # fmt: skip
    return root


def _upscaled(labels: np.ndarray) -> torch.Tensor:
    """The nearest-neighbour 16x upscale of a (SIZE, SIZE) map, written independently."""
    return torch.from_numpy(labels).long().repeat_interleave(16, 0).repeat_interleave(16, 1)


@pytest.mark.parametrize(
    ("width", "height", "want"),
    [
        (480, 360, (341, 256)),  # CamVid: 256 * 480 / 360 = 341.33
        (640, 480, (341, 256)),  # NYUv2
        (360, 480, (256, 341)),  # portrait
        (300, 300, (256, 256)),
        (100, 300, (256, 768)),
        (500, 300, (426, 256)),  # 426.67 floored, not rounded
        (300, 500, (256, 426)),
        (341, 256, (341, 256)),  # already at the edge: unchanged
    ],
)
def test_resized_size_scales_the_shorter_side_to_the_edge_and_floors_the_longer(
    width, height, want
):
    assert resized_size(width, height, 256) == want


def test_camvid_loads_the_segnet_layout_at_a_shorter_side_of_256_and_ignores_void(tmp_path):
    root = _camvid(tmp_path, [1, 11])
    train, test, info = load_dataset("camvid", root)
    assert (info.num_classes, info.in_channels, info.ignore_index) == (11, 3, 255)
    assert (info.image_size, info.hflip) == (128, True)  # DFAD's 128 crop and its flip
    images, labels = train.tensors
    assert images.shape == (2, 3, 256, 256) and images.dtype == torch.float32
    assert labels.shape == (2, 256, 256) and labels.dtype == torch.uint8  # an eighth of int64
    _, batch = next(iterate_batches(train, 2, "cpu"))
    assert batch.dtype == torch.int64 and torch.equal(batch, labels.long())  # widened per batch
    want = _labels([0, 5, 10, 11])
    want[want == 11] = 255  # void
    assert torch.equal(labels[0], _upscaled(want))  # nearest: each label repeated 16x16
    assert set(test.tensors[1].unique().tolist()) == {1, 255}
    assert dataset_task("camvid") == "seg"


def test_nyuv2_loads_image_and_seg13_folders(tmp_path):
    train, test, info = load_dataset("nyuv2", _nyuv2(tmp_path, [3, 255]))
    assert (info.num_classes, info.ignore_index, info.image_size) == (13, 255, 128)
    assert train.tensors[0].shape == (3, 3, 256, 256)
    assert torch.equal(train.tensors[1][1], _upscaled(_labels([0, 12, 255])))
    assert set(test.tensors[1].unique().tolist()) == {3, 255}


def test_both_splits_keep_the_aspect_and_test_images_stay_whole(tmp_path):
    """4:3 frames become 341x256 in train and test; image_size sets only the train crop."""
    train, test, info = load_dataset("camvid", _camvid(tmp_path, [2, 7], WIDE), 64)
    assert info.image_size == 64
    assert train.tensors[0].shape == (2, 3, 256, 341) and train.tensors[1].shape == (2, 256, 341)
    assert test.tensors[0].shape == (2, 3, 256, 341) and test.tensors[1].shape == (2, 256, 341)
    assert set(train.tensors[1].unique().tolist()) == {0, 5, 10, 255}  # no new label values
    assert set(test.tensors[1].unique().tolist()) == {2, 7}
    crops, maps = seg_augment(*train.tensors, info, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 64, 64) and maps.shape == (2, 64, 64)


def test_pixels_are_normalised_with_mean_and_std_one_half(tmp_path):
    """A 341x256 image is already at the edge, so its pixels arrive unresized: (p/255-0.5)/0.5."""
    rgb = np.random.default_rng(5).integers(0, 256, (256, 341, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1] = 0, 255
    for split in ("train", "test"):
        name = "0001TP_000000.png"
        pair = tmp_path / split / name, tmp_path / f"{split}annot" / name
        _write_pair(*pair, _labels([1], (341, 256)), 0, rgb)
    train, test, info = load_dataset("camvid", tmp_path)
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    want = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.equal(train.tensors[0][0], want) and torch.equal(test.tensors[0][0], want)
    assert train.tensors[0][0, :, 0, 0].tolist() == [-1.0] * 3
    assert train.tensors[0][0, :, 0, 1].tolist() == [1.0] * 3


def test_a_split_of_images_of_two_sizes_is_refused_in_one_line(tmp_path):
    root = _camvid(tmp_path, [1], WIDE)
    name = "0001TP_000009.png"
    _write_pair(root / "test" / name, root / "testannot" / name, _labels([1]), 0)  # square
    with pytest.raises(DataError) as caught:
        load_dataset("camvid", root)
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"camvid: image .*test/0001TP_000009\.png resizes to 256x256 but .*test/0001TP_000000\.png "
        r"to 341x256; every image of a split must resize to one size",
        message,
    )


def test_a_label_map_of_another_size_than_its_image_is_refused(tmp_path):
    root = _camvid(tmp_path, [1], WIDE)
    Image.fromarray(_labels([1]).astype(np.uint8), mode="L").save(
        root / "testannot" / "0001TP_000001.png"
    )
    with pytest.raises(
        DataError, match=r"testannot/0001TP_000001\.png is 16x16 but its image is 24x18"
    ):
        load_dataset("camvid", root)


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
