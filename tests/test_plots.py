"""The image grid draws any channel count: colour for 3, the first channel in grey otherwise."""

import pytest
import torch

from ddad_fast.plots import save_image_grid


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_image_grid_of_any_channel_count(tmp_path, channels):
    path = tmp_path / "samples.png"
    save_image_grid(torch.randn(5, channels, 8, 8), path, (), (), ncol=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
