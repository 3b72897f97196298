"""Tests of ddad_fast.data: every loader on fixture files in the real on-disk formats, the split,
the error messages and the training augmentation."""

import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ddad_fast.data import (
    DataError,
    DatasetInfo,
    dataset_names,
    default_image_size,
    load_dataset,
    train_augment,
)
from ddad_fast.data.common import stratified_split

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _normalised(pixels01: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """The expected normalisation of (N, C, H, W) pixels in [0, 1], written independently."""
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (pixels01 - mean) / std


# ---------------------------------------------------------------- registry


def test_names_and_default_sizes():
    assert dataset_names() == [
        "caltech101",
        "camvid",
        "cifar10",
        "cifar100",
        "composite-digits",
        "composite-fashion-mnist",
        "digits",
        "fashion-mnist",
        "nyuv2",
    ]
    sizes = {name: default_image_size(name) for name in dataset_names()}
    assert sizes == {
        "caltech101": 64,
        "cifar10": 32,
        "cifar100": 32,
        "digits": 8,
        "fashion-mnist": 28,
        "camvid": 128,
        "nyuv2": 128,
        "composite-digits": 32,
        "composite-fashion-mnist": 32,
    }


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*cifar10.*fashion-mnist"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        default_image_size("svhn")


# ---------------------------------------------------------------- split


def test_stratified_split_pinned_disjoint_and_stratified():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 1, 1, 1])
    train, test = stratified_split(labels, seed=0)
    # Pinned: numpy's PCG64 permutation gives these on every machine.
    np.testing.assert_array_equal(test, [4, 5, 9])
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    # 10 of class 0 -> 2 test; 5 of class 1 -> 1 test; the lone class-2 sample stays in train.
    np.testing.assert_array_equal(np.bincount(labels[test], minlength=3), [2, 1, 0])
    again_train, again_test = stratified_split(labels, seed=0)
    np.testing.assert_array_equal(again_test, test)
    np.testing.assert_array_equal(again_train, train)
    np.testing.assert_array_equal(stratified_split(labels, seed=1)[1], [4, 6, 11])


def test_stratified_split_two_samples_gives_one_test():
    train, test = stratified_split(np.array([3, 3]), seed=5)
    assert len(train) == 1 and len(test) == 1


# ---------------------------------------------------------------- digits


def test_digits_split_sizes_balance_and_normalisation():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test, info = load_dataset("digits", root="/nonexistent/ignored")
    assert info == DatasetInfo("digits", 10, 1, 8, (0.3053,), (0.3760,), hflip=False)
    assert (len(train), len(test)) == (1438, 359)
    image, label = train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label.shape == () and label.dtype == torch.int64
    # Each class contributes round(20 %) of its images to test.
    per_class = np.bincount(digits.target)
    expected_test = np.round(per_class * 0.2).astype(int)
    np.testing.assert_array_equal(np.bincount(test.tensors[1].numpy()), expected_test)
    np.testing.assert_array_equal(np.bincount(train.tensors[1].numpy()), per_class - expected_test)
    # Train and test together are exactly the normalised images, each once.
    full = _normalised(torch.from_numpy(digits.images / 16).float().unsqueeze(1), info)
    both = torch.cat([train.tensors[0], test.tensors[0]]).flatten(1).numpy()
    rows, counts = np.unique(both, axis=0, return_counts=True)
    full_rows, full_counts = np.unique(full.flatten(1).numpy(), axis=0, return_counts=True)
    np.testing.assert_allclose(rows, full_rows, atol=1e-6)
    np.testing.assert_array_equal(counts, full_counts)
    # A 16/16 pixel maps to (1 - mean) / std.
    assert torch.isclose(train.tensors[0].max(), torch.tensor((1 - 0.3053) / 0.3760))


def test_digits_split_seeded():
    _, test_a, _ = load_dataset("digits", split_seed=0)
    _, test_b, _ = load_dataset("digits", split_seed=0)
    _, test_c, _ = load_dataset("digits", split_seed=1)
    assert torch.equal(test_a.tensors[0], test_b.tensors[0])
    assert not torch.equal(test_a.tensors[0], test_c.tensors[0])


def test_digits_resize():
    train8, _, _ = load_dataset("digits")
    train16, _, info = load_dataset("digits", image_size=16)
    assert info.image_size == 16 and train16.tensors[0].shape == (1438, 1, 16, 16)
    expected = F.interpolate(
        train8.tensors[0], size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(train16.tensors[0], expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- fashion-mnist


def _write_idx(path: Path, magic: int, array: np.ndarray, drop_bytes: int = 0) -> None:
    raw = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) - drop_bytes])


@pytest.fixture
def fashion_root(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 3), ("t10k", 2)):
        _write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte.gz", 2051, rng.integers(0, 256, (n, 28, 28))
        )
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.arange(n) + 7)
    return tmp_path


def _read_gz_idx(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read()[header:], dtype=np.uint8)


def test_fashion_mnist_fixture(fashion_root):
    train, test, info = load_dataset("fashion-mnist", root=fashion_root)
    assert info == DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), hflip=True)
    assert (len(train), len(test)) == (3, 2)
    assert train.tensors[0].shape == (3, 1, 28, 28) and train.tensors[0].dtype == torch.float32
    assert train.tensors[1].tolist() == [7, 8, 9] and test.tensors[1].tolist() == [7, 8]
    assert test[1][1].shape == () and test[1][1].dtype == torch.int64
    raw = _read_gz_idx(fashion_root / "train-images-idx3-ubyte.gz", 16).reshape(3, 1, 28, 28)
    expected = _normalised(torch.from_numpy(raw / 255).float(), info)
    torch.testing.assert_close(train.tensors[0], expected)
    # A known pixel: 255 -> (1 - 0.2860) / 0.3530.
    row, col = np.argwhere(raw[0, 0] == raw.max())[0]
    assert train.tensors[0][0, 0, row, col].item() == pytest.approx((1 - 0.2860) / 0.3530)


def test_fashion_mnist_resize(fashion_root):
    native, _, _ = load_dataset("fashion-mnist", root=fashion_root)
    train, test, info = load_dataset("fashion-mnist", root=fashion_root, image_size=32)
    assert info.image_size == 32
    assert train.tensors[0].shape == (3, 1, 32, 32) and test.tensors[0].shape == (2, 1, 32, 32)
    expected = F.interpolate(
        native.tensors[0], size=(32, 32), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(train.tensors[0], expected, atol=1e-5, rtol=1e-5)


def test_fashion_mnist_missing_folder(tmp_path):
    with pytest.raises(
        DataError, match=r"fashion-mnist: expected .*nope.*apt-get install dataset-"
    ):
        load_dataset("fashion-mnist", root=tmp_path / "nope")


def test_fashion_mnist_missing_file(fashion_root):
    (fashion_root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*--data-root"):
        load_dataset("fashion-mnist", root=fashion_root)


def test_fashion_mnist_bad_magic(fashion_root):
    _write_idx(fashion_root / "train-images-idx3-ubyte.gz", 2049, np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz has IDX magic number 2049"):
        load_dataset("fashion-mnist", root=fashion_root)


def test_fashion_mnist_truncated_idx(fashion_root):
    path = fashion_root / "t10k-images-idx3-ubyte.gz"
    _write_idx(path, 2051, np.zeros((2, 28, 28)), drop_bytes=100)
    with pytest.raises(DataError, match=re.escape(f"{path} has 1484 bytes, expected 1584")):
        load_dataset("fashion-mnist", root=fashion_root)


def test_fashion_mnist_truncated_gzip(fashion_root):
    path = fashion_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=re.escape(f"cannot decompress {path}")):
        load_dataset("fashion-mnist", root=fashion_root)


def test_fashion_mnist_count_mismatch(fashion_root):
    _write_idx(fashion_root / "train-labels-idx1-ubyte.gz", 2049, np.array([1, 2]))
    with pytest.raises(DataError, match="has 3 images but .*train-labels.* has 2 labels"):
        load_dataset("fashion-mnist", root=fashion_root)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_files():
    train, test, info = load_dataset("fashion-mnist")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.tensors[0].shape == (60000, 1, 28, 28)
    assert torch.bincount(train.tensors[1]).tolist() == [6000] * 10
    # The hard-coded constants are the train set's statistics.
    assert abs(train.tensors[0].mean().item()) < 1e-3
    assert train.tensors[0].std().item() == pytest.approx(1.0, abs=1e-3)


# ---------------------------------------------------------------- CIFAR


def _cifar_batch(rng, n: int, label_key: bytes, num_classes: int) -> dict:
    return {
        b"batch_label": b"fixture batch",
        label_key: rng.integers(0, num_classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }


def _pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj))


@pytest.fixture
def cifar10_root(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", _cifar_batch(rng, 2, b"labels", 10))
    test = _cifar_batch(rng, 3, b"labels", 10)
    test[b"data"][0] = np.repeat(np.array([255, 0, 51], dtype=np.uint8), 1024)  # R, G, B planes
    _pickle(folder / "test_batch", test)
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 4), ("test", 2)):
        batch = _cifar_batch(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * n
        batch[b"fine_labels"][0] = 99
        _pickle(folder / split, batch)
    return tmp_path


def test_cifar10_fixture(cifar10_root):
    train, test, info = load_dataset("cifar10", root=cifar10_root)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # DFAD's
    assert info == DatasetInfo("cifar10", 10, 3, 32, mean, std, hflip=True)
    assert (len(train), len(test)) == (10, 3)
    image, label = test[0]
    assert (
        image.shape == (3, 32, 32) and image.dtype == torch.float32 and label.dtype == torch.int64
    )
    # Rows hold the R plane, then G, then B, each 32x32 row-major.
    for channel, value in enumerate((255, 0, 51)):
        expected = (value / 255 - mean[channel]) / std[channel]
        torch.testing.assert_close(image[channel], torch.full((32, 32), expected))
    folder = cifar10_root / "cifar-10-batches-py"
    batches = [pickle.loads((folder / f"data_batch_{i}").read_bytes()) for i in range(1, 6)]
    data = np.concatenate([b[b"data"] for b in batches]).reshape(10, 3, 32, 32)
    torch.testing.assert_close(
        train.tensors[0], _normalised(torch.from_numpy(data / 255).float(), info)
    )
    assert train.tensors[1].tolist() == sum((b[b"labels"] for b in batches), [])


def test_cifar10_root_is_inner_folder_and_resize(cifar10_root):
    train, _, _ = load_dataset("cifar10", root=cifar10_root)
    train16, test16, info = load_dataset(
        "cifar10", root=cifar10_root / "cifar-10-batches-py", image_size=16
    )
    assert info.image_size == 16 and test16.tensors[0].shape == (3, 3, 16, 16)
    expected = F.interpolate(
        train.tensors[0], size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    )
    torch.testing.assert_close(train16.tensors[0], expected, atol=1e-5, rtol=1e-5)


def test_cifar100_fixture(cifar100_root):
    train, test, info = load_dataset("cifar100", root=cifar100_root)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # DFAD's, as CIFAR-10's
    assert info == DatasetInfo("cifar100", 100, 3, 32, mean, std, hflip=True)
    assert (len(train), len(test)) == (4, 2)
    batch = pickle.loads((cifar100_root / "cifar-100-python" / "train").read_bytes())
    assert train.tensors[1].tolist() == batch[b"fine_labels"] and train.tensors[1][0] == 99
    data = batch[b"data"].reshape(4, 3, 32, 32)
    torch.testing.assert_close(
        train.tensors[0], _normalised(torch.from_numpy(data / 255).float(), info)
    )


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(
        DataError,
        match=r"cifar10: expected .*/cifar-10-batches-py/data_batch_1\.\.5 and test_batch "
        r"\(the python pickle version from https://www\.cs\.toronto\.edu/~kriz/cifar\.html\)",
    ):
        load_dataset("cifar10", root=tmp_path / "absent")


def test_cifar_wrong_layout(cifar10_root):
    # A CIFAR-10 folder is no CIFAR-100 one.
    with pytest.raises(DataError, match=r"cifar100: expected .*/cifar-100-python/train and test"):
        load_dataset("cifar100", root=cifar10_root)
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=re.escape(f"{cifar10_root} has no such files")):
        load_dataset("cifar10", root=cifar10_root)


def test_cifar_pickle_missing_key(cifar100_root):
    path = cifar100_root / "cifar-100-python" / "test"
    batch = pickle.loads(path.read_bytes())
    del batch[b"fine_labels"]
    _pickle(path, batch)
    with pytest.raises(DataError, match=re.escape(f"{path} is missing key b'fine_labels'")):
        load_dataset("cifar100", root=cifar100_root)


def test_cifar_truncated_pickle(cifar10_root):
    path = cifar10_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=re.escape(f"cannot unpickle {path}")):
        load_dataset("cifar10", root=cifar10_root)


# name -> (the entries a damaged test_batch has, in place of its own; the error's words)
DAMAGED_TEST_BATCHES = {
    "labels as bytes": (lambda b: {b"labels": [b"a", b"b", b"c"]}, "labels that are not integers"),
    "labels none": (lambda b: {b"labels": None}, "has labels that are not integers"),
    "no images": (lambda b: {b"data": b[b"data"][:0], b"labels": []}, "test split holds no images"),
    "short rows": (
        lambda b: {b"data": b[b"data"][:, :1000]},
        r"test_batch data is uint8 \(3, 1000\), expected uint8",
    ),
}


@pytest.mark.parametrize("damage", DAMAGED_TEST_BATCHES)
def test_a_damaged_cifar_test_batch_is_refused(cifar10_root, damage):
    entries, message = DAMAGED_TEST_BATCHES[damage]
    path = cifar10_root / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes())
    _pickle(path, {**batch, **entries(batch)})
    with pytest.raises(DataError, match=message):
        load_dataset("cifar10", root=cifar10_root)


# ---------------------------------------------------------------- Caltech-101

# class -> colours of its images; a None colour is a greyscale image.
CALTECH_TREE = {
    "BACKGROUND_Google": [(1, 2, 3), (4, 5, 6)],
    "accordion": [(200, 100, 50), (10, 20, 30), (90, 90, 90), (0, 255, 0), (255, 255, 255)],
    "airplanes": [None, (30, 60, 90)],
    "anchor": [(120, 10, 240)],
}


@pytest.fixture
def caltech_root(tmp_path):
    folder = tmp_path / "101_ObjectCategories"
    for cls, colours in CALTECH_TREE.items():
        (folder / cls).mkdir(parents=True)
        for i, colour in enumerate(colours):
            image = (
                Image.new("L", (12, 10), 77)
                if colour is None
                else Image.new("RGB", (12, 10), colour)
            )
            image.save(folder / cls / f"image_{i + 1:04d}.jpg", quality=95)
    return tmp_path


def test_caltech_classes_split_and_laziness(caltech_root):
    train, test, info = load_dataset("caltech101", root=caltech_root)
    assert info == DatasetInfo("caltech101", 3, 3, 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), hflip=True)
    assert (len(train), len(test)) == (6, 2)
    paths = train.paths + test.paths
    assert len(set(paths)) == 8 and not any("BACKGROUND_Google" in str(p) for p in paths)
    # Sorted class names give the labels; each class with >= 2 images has exactly one test image.
    classes = ["accordion", "airplanes", "anchor"]
    for p, label in zip(paths, torch.cat([train.labels, test.labels]).tolist(), strict=True):
        assert p.parent.name == classes[label]
    assert sorted(test.labels.tolist()) == [0, 1]
    image, label = train[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert label.shape == () and label.dtype == torch.int64


def test_caltech_split_seeded(caltech_root):
    first = load_dataset("caltech101", root=caltech_root, split_seed=3)[1].paths
    assert load_dataset("caltech101", root=caltech_root, split_seed=3)[1].paths == first
    test_sets = {
        tuple(load_dataset("caltech101", root=caltech_root, split_seed=s)[1].paths)
        for s in range(8)
    }
    assert len(test_sets) > 1


def test_caltech_decoding_and_normalisation(caltech_root):
    train, test, info = load_dataset(
        "caltech101", root=caltech_root / "101_ObjectCategories", image_size=8
    )
    items = {
        p.parent.name + "/" + p.name: ds[i] for ds in (train, test) for i, p in enumerate(ds.paths)
    }
    grey, _ = items["airplanes/image_0001.jpg"]
    assert grey.shape == (3, 8, 8)
    pixels = grey * torch.tensor(info.std)[:, None, None] + torch.tensor(info.mean)[:, None, None]
    torch.testing.assert_close(pixels, torch.full((3, 8, 8), 77 / 255), atol=2 / 255, rtol=0)
    colour, label = items["accordion/image_0001.jpg"]
    assert label.item() == 0
    expected = (torch.tensor([200, 100, 50]) / 255 - 0.5) / 0.5  # DFAD's Normalize(0.5, 0.5)
    torch.testing.assert_close(colour, expected[:, None, None].expand(3, 8, 8), atol=0.04, rtol=0)


@pytest.mark.parametrize("landscape", [True, False])
def test_caltech_keeps_the_aspect_and_takes_the_centre_as_dfad(tmp_path, landscape):
    # 20 x 10: red, green, blue bands of 5, 10, 5 along the long side. Resize(8) makes it 16 x 8
    # and CenterCrop(8) keeps the green band alone; squashing to 8 x 8 would keep red and blue.
    bands = np.zeros((10, 20, 3), dtype=np.uint8)
    bands[:, :5, 0] = bands[:, 5:15, 1] = bands[:, 15:, 2] = 255
    folder = tmp_path / "101_ObjectCategories" / "bands"
    folder.mkdir(parents=True)
    for i in range(2):
        image = Image.fromarray(bands if landscape else bands.transpose(1, 0, 2))
        image.save(folder / f"image_{i:04d}.jpg", quality=100)
    train, _, info = load_dataset("caltech101", root=tmp_path, image_size=8)
    pixels = train[0][0] * 0.5 + 0.5
    inner = pixels[:, 1:-1, 1:-1]  # the crop's edge pixels blend with the neighbouring bands
    torch.testing.assert_close(inner[1], torch.ones_like(inner[1]), atol=0.1, rtol=0)
    assert inner[0].max() < 0.25 and inner[2].max() < 0.25  # squashed: red and blue near 1


def test_caltech_unreadable_class_folder(caltech_root, monkeypatch):
    iterdir = Path.iterdir

    def refuse_anchor(self):
        if self.name == "anchor":  # root reads any folder: the refusal is simulated
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse_anchor)
    with pytest.raises(DataError, match=r"caltech101: cannot list .*anchor: Permission denied"):
        load_dataset("caltech101", root=caltech_root)


def test_caltech_missing_folder(tmp_path):
    with pytest.raises(
        DataError, match=r"caltech101: expected .*/101_ObjectCategories/<class>/\*\.jpg"
    ):
        load_dataset("caltech101", root=tmp_path)


def test_caltech_without_classes(tmp_path):
    (tmp_path / "101_ObjectCategories" / "BACKGROUND_Google").mkdir(parents=True)
    with pytest.raises(DataError, match="has no class subfolders"):
        load_dataset("caltech101", root=tmp_path)


def test_caltech_corrupt_jpg(caltech_root):
    folder = caltech_root / "101_ObjectCategories" / "anchor"
    garbage = folder / "image_0002.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    good = folder / "image_0001.jpg"
    good.write_bytes(good.read_bytes()[:200])  # truncated mid-scan
    train, test, _ = load_dataset("caltech101", root=caltech_root)
    anchors = [
        (ds, i, p) for ds in (train, test) for i, p in enumerate(ds.paths) if p.parent == folder
    ]
    assert len(anchors) == 2
    for ds, i, path in anchors:
        with pytest.raises(DataError, match=re.escape(f"caltech101: cannot decode {path}")):
            ds[i]


# ---------------------------------------------------------------- augmentation


def _info(channels: int, size: int, hflip: bool) -> DatasetInfo:
    return DatasetInfo(
        "fixture",
        10,
        channels,
        size,
        (0.5, 0.4, 0.3)[:channels],
        (0.2, 0.25, 0.3)[:channels],
        hflip,
    )


def _matches(
    image: torch.Tensor, out: torch.Tensor, info: DatasetInfo
) -> set[tuple[int, int, bool]]:
    """All (dy, dx, flipped) for which out is that crop of image padded in pixel space by black."""
    pad = max(1, info.image_size // 8)
    mean = torch.tensor(info.mean, dtype=image.dtype)[:, None, None]
    std = torch.tensor(info.std, dtype=image.dtype)[:, None, None]
    padded = (F.pad(image * std + mean, (pad,) * 4) - mean) / std
    size = info.image_size
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + size, dx : dx + size]
            for flipped, candidate in ((False, crop), (True, crop.flip(-1))):
                if torch.allclose(candidate, out, atol=1e-6):
                    found.add((dy, dx, flipped))
    return found


@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 8), (3, 7)])
def test_train_augment_is_translation_and_flip(channels, size):
    info = _info(channels, size, hflip=True)
    images = torch.randn(48, channels, size, size, generator=torch.Generator().manual_seed(2))
    out = train_augment(images, info, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    matches = [_matches(x, y, info) for x, y in zip(images, out, strict=True)]
    assert all(len(m) == 1 for m in matches)  # each output is one translated (flipped) crop
    pad = max(1, size // 8)
    shifts = {(dy, dx) for m in matches for dy, dx, _ in m}
    assert len(shifts - {(pad, pad)}) > 2  # (pad, pad) is no move; several others occur
    flipped = [f for m in matches for _, _, f in m]
    assert any(flipped) and not all(flipped)


def test_train_augment_no_flip_when_not_allowed():
    info = _info(1, 28, hflip=False)
    images = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    out = train_augment(images, info, torch.Generator().manual_seed(1))
    matches = [_matches(x, y, info) for x, y in zip(images, out, strict=True)]
    assert all(len(m) == 1 and not next(iter(m))[2] for m in matches)
    assert not torch.equal(out, images)


def test_train_augment_seeded_and_dtype():
    info = _info(3, 16, hflip=True)
    images = torch.randn(
        32, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    a = train_augment(images, info, torch.Generator().manual_seed(7))
    b = train_augment(images, info, torch.Generator().manual_seed(7))
    c = train_augment(images, info, torch.Generator().manual_seed(8))
    assert a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_train_augment_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(N, 3, 32, 32\)"):
        train_augment(torch.zeros(2, 3, 28, 28), _info(3, 32, hflip=True), None)
