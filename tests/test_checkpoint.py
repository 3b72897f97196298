"""Atomic writes, and every broken or hostile checkpoint getting an error that names it."""

import os
import pickle
import stat

import pytest
import torch

from ddad_fast.checkpoint import load_checkpoint, save_atomic
from ddad_fast.errors import CheckpointError, ConfigError
from ddad_fast.model_io import load_model, model_record
from ddad_fast.models import build_model


def test_save_atomic_leaves_no_temporary_files(tmp_path):
    save_atomic({"a": torch.ones(3)}, tmp_path / "x.pt")
    assert os.listdir(tmp_path) == ["x.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "x.pt")["a"], torch.ones(3))


def test_checkpoints_get_the_permissions_of_any_other_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        save_atomic({"a": torch.ones(3)}, tmp_path / "x.pt")
        (tmp_path / "other.txt").write_text("")
    finally:
        os.umask(umask)
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("x.pt", "other.txt")]
    assert modes == [0o644, 0o644]


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    save_atomic({"version": 1}, tmp_path / "x.pt")

    def torn_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"version": 2}, tmp_path / "x.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "x.pt")["version"] == 1
    assert os.listdir(tmp_path) == ["x.pt"]


def test_truncated_checkpoint_is_named(tmp_path):
    save_atomic({"w": torch.randn(1000)}, tmp_path / "x.pt")
    data = (tmp_path / "x.pt").read_bytes()
    (tmp_path / "x.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"x\.pt is truncated or corrupt"):
        load_checkpoint(tmp_path / "x.pt")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    torch.save({"payload": _RunsCode()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pt")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pt does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_wrong_architecture_lists_the_mismatch(tmp_path):
    small = build_model("smallcnn", 10, 1, 8)
    record = model_record("tinycnn", small, 10, 1, 8)  # smallcnn weights labelled tinycnn
    save_atomic(record, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=r"t\.pt does not match .*shape: "):
        load_model(tmp_path / "t.pt")


def test_published_state_dict_loads_with_a_name(tmp_path):
    model = build_model("resnet18", 10, 3, 32)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}  # as DataParallel saves
    torch.save(state, tmp_path / "published.pt")
    with pytest.raises(ConfigError, match="bare state_dict"):
        load_model(tmp_path / "published.pt")
    loaded, record = load_model(tmp_path / "published.pt", "resnet18", 10, 3, 32)
    assert record["model"] == "resnet18"
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))


def test_published_state_dict_for_another_class_count_is_named(tmp_path):
    torch.save(build_model("resnet18", 100, 3, 32).state_dict(), tmp_path / "c100.pt")
    with pytest.raises(CheckpointError, match=r"linear\.weight: file \(100, 512\) vs model \(10"):
        load_model(tmp_path / "c100.pt", "resnet18", 10, 3, 32)


def test_recorded_input_size_mismatch_is_refused(tmp_path):
    save_atomic(
        model_record("tinycnn", build_model("tinycnn", 10, 1, 8), 10, 1, 8), tmp_path / "m.pt"
    )
    with pytest.raises(ConfigError, match="image_size=8 but this run needs image_size=28"):
        load_model(tmp_path / "m.pt", num_classes=10, in_channels=1, image_size=28)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"state_dict": None}, "has no state_dict"),
        ({"num_classes": "10"}, "'num_classes' is missing or not int"),
        ({"model": None}, "'model' is missing or not str"),
    ],
)
def test_a_damaged_model_record_is_named(tmp_path, change, message):
    record = model_record("tinycnn", build_model("tinycnn", 10, 1, 8), 10, 1, 8)
    save_atomic({**record, **change}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "m.pt")
