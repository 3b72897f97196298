"""DFAD's segmentation train transform (``seg_augment``): a random square crop, padded where an
image is smaller, and a flip of image and label map together, seeded and drawn per sample."""

import pytest
import torch

from ddad_fast.data import DatasetInfo, seg_augment

HALF = (0.5, 0.5, 0.5)  # CamVid's and NYUv2's normalisation: black is -1


def _info(crop: int, channels: int = 3, hflip: bool = True) -> DatasetInfo:
    mean = HALF[:channels] if channels == 3 else (0.0,)
    std = HALF[:channels] if channels == 3 else (1.0,)
    return DatasetInfo("t", 11, channels, crop, mean, std, hflip=hflip, ignore_index=255)


def _positions(n: int, h: int, w: int) -> torch.Tensor:
    """(n, h, w) int64 maps holding 100 * row + column at every pixel, the same in each sample."""
    grid = torch.arange(h)[:, None] * 100 + torch.arange(w)
    return grid.expand(n, h, w).clone()


def test_each_sample_is_one_crop_flipped_or_not_with_its_labels():
    labels = _positions(64, 20, 30)
    images = labels[:, None].float()
    out_images, out_labels = seg_augment(
        images, labels, _info(8, 1), torch.Generator().manual_seed(0)
    )
    assert out_images.shape == (64, 1, 8, 8) and out_labels.shape == (64, 8, 8)
    assert torch.equal(out_images[:, 0].long(), out_labels)  # the same window, the same flip
    corners, flips = set(), []
    for out in out_labels:
        dy, dx = divmod(int(out.min()), 100)
        window = labels[0, dy : dy + 8, dx : dx + 8]
        flipped = bool(out[0, 0] > out[0, 1])
        assert torch.equal(out, window.flip(-1) if flipped else window)
        corners.add((dy, dx))
        flips.append(flipped)
    assert {dy for dy, _ in corners} <= set(range(13)) and {dx for _, dx in corners} <= set(
        range(23)
    )
    assert len(corners) > 20 and any(flips) and not all(flips)


@pytest.mark.parametrize("height", [100, 99])
def test_a_side_shorter_than_the_crop_is_padded_black_and_ignored(height):
    """Crop 128 of 150-wide images: rows padded by ceil((128 - h) / 2) top and bottom, images
    with -1 (black after the 0.5/0.5 normalisation), labels with 255."""
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(16, 3, height, 150, generator=gen) * 2 - 1
    labels = torch.randint(0, 11, (16, height, 150), generator=gen)
    out_images, out_labels = seg_augment(
        images, labels, _info(128), torch.Generator().manual_seed(2)
    )
    assert out_images.shape == (16, 3, 128, 128) and out_labels.shape == (16, 128, 128)
    pad = (128 - height + 1) // 2  # 14 for 100 rows (no room left), 15 for 99 (one row to move)
    tops = set()
    for i in range(16):
        ignored_rows = (out_labels[i] == 255).all(dim=1)
        top = int(ignored_rows.long().argmin())  # the first row of the image
        tops.add(top)
        assert top in (pad, pad - 1) and (height == 99 or top == pad)
        inside = slice(top, top + height)
        assert ignored_rows[:top].all() and ignored_rows[top + height :].all()
        assert not ignored_rows[inside].any()
        assert (out_images[i][:, :top] == -1).all() and (
            out_images[i][:, top + height :] == -1
        ).all()
        crop, crop_labels = out_images[i][:, inside], out_labels[i][inside]
        matches = [
            dx
            for dx in range(150 - 128 + 1)
            for flip in (False, True)
            if torch.equal(
                crop_labels,
                labels[i][:, dx : dx + 128].flip(-1) if flip else labels[i][:, dx : dx + 128],
            )
            and torch.equal(
                crop,
                images[i][:, :, dx : dx + 128].flip(-1) if flip else images[i][:, :, dx : dx + 128],
            )
        ]
        assert len(matches) == 1
    assert len(tops) == (2 if height == 99 else 1)


def test_the_same_seed_gives_the_same_crops_and_flips():
    labels = _positions(32, 40, 50)
    images = labels[:, None].float().expand(32, 3, 40, 50)
    info = _info(16)
    a = seg_augment(images, labels, info, torch.Generator().manual_seed(7))
    b = seg_augment(images, labels, info, torch.Generator().manual_seed(7))
    c = seg_augment(images, labels, info, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    torch.manual_seed(3)
    d = seg_augment(images, labels, info, None)  # the global generator, as the teacher run's
    torch.manual_seed(3)
    assert torch.equal(seg_augment(images, labels, info, None)[1], d[1])


@pytest.mark.parametrize("hflip", [False, True])
def test_a_batch_at_the_crop_size_draws_no_offsets(hflip):
    """As torchvision's crop: nothing to choose, nothing drawn; only the flips (composite data)."""
    labels = _positions(16, 8, 8)
    images = labels[:, None].float()
    gen = torch.Generator().manual_seed(4)
    out_images, out_labels = seg_augment(images, labels, _info(8, 1, hflip), gen)
    reference = torch.Generator().manual_seed(4)
    flips = (
        torch.randint(0, 2, (16,), generator=reference).bool()
        if hflip
        else torch.zeros(16, dtype=torch.bool)
    )
    assert torch.equal(gen.get_state(), reference.get_state())
    want = torch.where(flips[:, None, None], labels.flip(-1), labels)
    assert torch.equal(out_labels, want) and torch.equal(out_images[:, 0].long(), want)
    assert flips.any() == hflip


def test_labels_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) and \(N, H, W\)"):
        seg_augment(
            torch.zeros(2, 3, 20, 20), torch.zeros(2, 20, 21, dtype=torch.long), _info(8), None
        )
