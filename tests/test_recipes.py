"""``ddad distill --recipe NAME``: each recipe is its published command's settings, flags given on
the command line override them, and ``--print-config`` shows the result without loading anything."""

import dataclasses

import pytest

from ddad_fast import cli
from ddad_fast.cli import build_parser, main, resolve_distill_settings
from ddad_fast.distill_config import DistillConfig
from ddad_fast.recipes import RECIPES

# The hyperparameters of DFAD_cifar.py's README command (`--dataset cifar10 --scheduler`).
DFAD_CIFAR10 = {
    "task": "cls",
    "teacher": "resnet34",
    "student": "resnet18",
    "dataset": "cifar10",
    "image_size": 32,
    "seed": 1,
    "epochs": 500,
    "epoch_iters": 50,
    "student_steps": 5,
    "batch_size": 256,
    "nz": 256,
    "ngf": 64,
    "student_optimizer": "sgd",
    "lr_student": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_generator": 1e-3,
    "schedule": "step",
    "milestones": (100, 200),
    "step_every": 0,
    "step_gamma": 0.1,
    "lambda_bn": 0.0,
    "lambda_adv": 1.0,
    "lambda_onehot": 0.0,
    "lambda_entropy": 0.0,
    "lambda_activation": 0.0,
}
DFAD_SEG = {
    "task": "seg",
    "teacher": "deeplabv3_resnet50_dfad",
    "student": "deeplabv3_mobilenetv2_dfad",
    "image_size": 128,
    "seed": 1,
    "epochs": 300,
    "epoch_iters": 50,
    "student_steps": 5,
    "batch_size": 64,
    "nz": 256,
    "lr_student": 0.1,
    "momentum": 0.9,
    "lr_generator": 1e-3,
    "schedule": "step",
    "milestones": None,
    "step_every": 100,
    "lambda_bn": 0.0,
    "lambda_adv": 1.0,
    "seg_generator_bn": False,
}
EXPECTED = {
    "ddad": {f.name: f.default for f in dataclasses.fields(DistillConfig)},
    "dfad-cifar10": DFAD_CIFAR10,
    "dfad-cifar100": {**DFAD_CIFAR10, "dataset": "cifar100"},
    "dfad-caltech101": {
        "task": "cls",
        "teacher": "resnet34",
        "student": "resnet18",
        "dataset": "caltech101",
        "image_size": 128,
        "seed": 1,
        "epochs": 300,
        "epoch_iters": 50,
        "student_steps": 5,
        "batch_size": 64,
        "nz": 256,
        "lr_student": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "lr_generator": 1e-3,
        "schedule": "step",
        "milestones": None,
        "step_every": 100,
        "step_gamma": 0.1,
        "lambda_bn": 0.0,
        "lambda_adv": 1.0,
    },
    "dfad-camvid": {**DFAD_SEG, "dataset": "camvid", "weight_decay": 5e-4, "step_gamma": 0.1},
    "dfad-nyuv2": {**DFAD_SEG, "dataset": "nyuv2", "weight_decay": 5e-5, "step_gamma": 0.3},
    "deepinversion-bn": {
        "teacher": "resnet34",
        "student": "resnet18",
        "dataset": "cifar10",
        "image_size": 32,
        "batch_size": 256,
        "lambda_bn": 10.0,
        "lambda_adv": 0.0,
        "lr_generator": 1e-3,
        "epochs": 500,
    },
}


def _resolve(*argv: str) -> tuple[DistillConfig, dict[str, str]]:
    return resolve_distill_settings(build_parser().parse_args(["distill", *argv]))


def test_every_recipe_is_tested():
    assert EXPECTED.keys() == RECIPES.keys()


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_resolves_to_its_published_values(name):
    cfg, sources = _resolve("--recipe", name)
    cfg.validate()
    assert {key: getattr(cfg, key) for key in EXPECTED[name]} == EXPECTED[name]
    assert {key for key, source in sources.items() if source == f"recipe {name}"} == set(
        RECIPES[name]
    )


def test_flags_given_override_the_recipe_before_or_after_it():
    flags = ["--lr_S", "0.05", "--epochs", "300", "--milestones", "50"]  # DFAD's name for one
    for argv in (["--recipe", "dfad-cifar10", *flags], [*flags, "--recipe", "dfad-cifar10"]):
        cfg, sources = _resolve(*argv)
        assert (cfg.lr_student, cfg.epochs, cfg.milestones) == (0.05, 300, (50,))
        assert (cfg.batch_size, cfg.lambda_bn, cfg.seed) == (256, 0.0, 1)  # the recipe's
        assert sources["lr_student"] == sources["milestones"] == "command line"
        assert sources["batch_size"] == "recipe dfad-cifar10"
        assert sources["out_dir"] == "default"


def test_a_flag_given_at_its_default_still_overrides_the_recipe():
    cfg, sources = _resolve("--recipe", "dfad-cifar10", "--lambda-bn", "1", "--seed", "0")
    assert (cfg.lambda_bn, cfg.seed) == (1.0, 0)
    assert sources["lambda_bn"] == sources["seed"] == "command line"


def _printed(out: str) -> dict[str, tuple[str, str]]:
    """``{setting: (value, source)}`` from ``--print-config``'s lines ``name = value  # source``."""
    rows = {}
    for line in out.splitlines():
        setting, _, rest = line.partition(" = ")
        value, _, source = rest.partition("  # ")
        rows[setting] = (value.rstrip(), source)
    return rows


def test_print_config_shows_the_published_values_and_loads_nothing(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("--print-config must not build a run")

    monkeypatch.setattr(cli, "build_trainer", refuse)
    out_dir = tmp_path / "run"
    argv = ["distill", "--recipe", "dfad-cifar10", "--data-root", "/nonexistent",
            "--out-dir", str(out_dir), "--print-config"]  # fmt: skip
    assert main(argv) == 0
    printed = _printed(capsys.readouterr().out)
    assert list(printed) == [f.name for f in dataclasses.fields(DistillConfig)]
    recipe = "recipe dfad-cifar10"
    published = {
        "batch_size": "256", "lr_student": "0.1", "lr_generator": "0.001",
        "weight_decay": "0.0005", "momentum": "0.9", "epochs": "500", "epoch_iters": "50",
        "student_steps": "5", "nz": "256", "milestones": "(100, 200)", "step_gamma": "0.1",
        "lambda_bn": "0.0", "teacher": "resnet34", "student": "resnet18", "seed": "1",
    }  # fmt: skip
    assert {k: printed[k] for k in published} == {k: (v, recipe) for k, v in published.items()}
    assert printed["data_root"] == ("/nonexistent", "command line")
    assert printed["progress"] == ("True", "default")
    assert not out_dir.exists()


def test_print_config_refuses_bad_settings_in_one_line(capsys):
    argv = ["distill", "--recipe", "dfad-camvid", "--epochs", "50", "--print-config"]
    assert main([*argv, "--milestones", "20", "60"]) == 2
    err = capsys.readouterr().err
    assert err == "ddad: error: give milestones or step_every, not both (--step-every 0: none)\n"
    assert main([*argv, "--milestones", "20", "60", "--step-every", "0"]) == 2
    assert capsys.readouterr().err == (
        "ddad: error: milestones must be below epochs (50), got 20 60\n"
    )
    assert main([*argv, "--milestones", "20", "40", "--step-every", "0"]) == 0
    assert "milestones = (20, 40)" in capsys.readouterr().out
