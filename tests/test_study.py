"""The accuracy study: the script's smoke run writes its table, CSV and PNGs, and the generator
objectives of the study's rows are the sums of terms they claim to be."""

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_DISTILL
from torch.utils.data import TensorDataset

from bench.study import (
    DEFAULT_METHODS,
    METHODS,
    TINY_PLANS,
    CurvePoint,
    RunResult,
    StudyConfig,
    TeacherResult,
)
from bench.study_report import SECTION_BEGIN, SECTION_END, replace_section, section
from ddad_fast.data import DatasetInfo
from ddad_fast.feature_hooks import PenultimateFeatures
from ddad_fast.losses import activation_loss, negative_entropy_loss, onehot_loss
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer

ROOT = Path(__file__).resolve().parents[1]


def test_the_study_script_writes_table_csv_and_pngs(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Measured results\n\nkept\n")
    argv = ["--tiny", "--seeds", "0", "--out-dir", str(tmp_path / "out")]
    argv += ["--student", "smallcnn", "--image-size", "12", "--budget-scale", "2"]
    argv += ["--device", "cpu"]
    argv += ["--results", str(results), "--figures", str(tmp_path / "figures")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "accuracy.py"), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "out" / "runs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["dataset"], r["method"]) for r in rows] == [("digits", m) for m in DEFAULT_METHODS]
    text = results.read_text()
    assert text.startswith("# Measured results\n\nkept\n") and text.count(SECTION_BEGIN) == 1
    for method in DEFAULT_METHODS:
        assert f"| {METHODS[method].label} | " in text
    assert "| teacher (smallcnn) | " in text
    assert "smallcnn teacher -> smallcnn student" in text and "no GPU" in text
    assert "- digits (12x12): teacher 2 epochs; every method 2 epochs x 4 iterations" in text
    assert (tmp_path / "figures" / "accuracy_runs.csv").read_bytes() == (
        tmp_path / "out" / "runs.csv"
    ).read_bytes()
    pngs = {p.name for p in (tmp_path / "figures").glob("*.png")}
    grids = {f"samples_digits_{m}.png" for m in ("ddad", "dfad", "bn-only", "dafl")}
    assert pngs == {"accuracy_vs_time.png"} | grids
    assert all((tmp_path / "figures" / p).stat().st_size > 1000 for p in pngs)


def test_a_section_without_data_free_rows_has_no_sample_table():
    cfg = StudyConfig(plans=TINY_PLANS, methods=("kd-real", "scratch"), seeds=(0,))
    teachers = [TeacherResult("digits", 90.0, 5.0, Path("teacher.pt"))]
    point = CurvePoint(1.0, 1.0, 80.0)
    runs = [RunResult("digits", m, 0, 80.0, 80.0, 1.0, 1.0, [point]) for m in cfg.methods]
    text = section(cfg, teachers, runs, "python bench/accuracy.py", "facts", ".")
    assert "| KD on the real training images (reference) | 80.00 ± 0.00 |" in text
    assert "Generated samples" not in text and "| dataset |  |" not in text
    assert text.endswith(SECTION_END)


def test_replace_section_replaces_only_the_marked_part(tmp_path):
    path = tmp_path / "R.md"
    path.write_text("head\n")
    replace_section(path, f"{SECTION_BEGIN}\nold\n{SECTION_END}")
    path.write_text(path.read_text() + "\ntail\n")
    replace_section(path, f"{SECTION_BEGIN}\nnew\n{SECTION_END}")
    assert path.read_text() == f"head\n\n{SECTION_BEGIN}\nnew\n{SECTION_END}\n\ntail\n"


def test_penultimate_features_are_the_last_linear_input():
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    hook = PenultimateFeatures(model)
    x = torch.randn(4, 3)
    hook.start()
    model(x)
    assert torch.equal(hook.collect(), model[1](model[0](x)))
    model(x)  # not capturing: nothing is kept
    with pytest.raises(RuntimeError, match="no features"):
        hook.collect()
    hook.remove()


def test_activation_loss_is_minus_the_mean_absolute_feature():
    f = torch.tensor([[1.0, -3.0], [0.0, 2.0]])
    assert activation_loss(f).item() == pytest.approx(-1.5)


def test_dafl_generator_loss_is_the_sum_of_its_weighted_terms():
    torch.manual_seed(0)
    info = DatasetInfo("random", 10, 1, 8, (0.5,), (0.25,), False)
    test_set = TensorDataset(torch.randn(4, 1, 8, 8), torch.arange(4))
    overrides = METHODS["dafl"].overrides
    cfg = dataclasses.replace(TINY_DISTILL, **overrides)
    teacher, student = build_model("smallcnn", 10, 1, 8), build_model("tinycnn", 10, 1, 8)
    generator = Generator(cfg.nz, cfg.ngf, 1, 8)
    trainer = DDADTrainer(cfg, teacher, student, generator, test_set, info)
    assert trainer.bn_hooks is None  # lambda_bn = 0
    z = trainer.noise()
    loss, parts, *_ = trainer.generator_loss(z)
    images = trainer.generator(z)  # train-mode BN: the same batch gives the same images
    hook = PenultimateFeatures(trainer.teacher)
    hook.start()
    t = trainer.teacher(images)
    expected = (
        overrides["lambda_onehot"] * onehot_loss(t)
        + overrides["lambda_entropy"] * negative_entropy_loss(t)
        + overrides["lambda_activation"] * activation_loss(hook.collect())
    )  # lambda_adv = 0: no L1 term
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts[1].item() == 0.0 and parts[2].item() == pytest.approx(loss.item())


def test_ddad_priors_objective_is_bn_only_plus_the_adversarial_term():
    torch.manual_seed(0)
    info = DatasetInfo("random", 10, 1, 8, (0.5,), (0.25,), False)
    test_set = TensorDataset(torch.randn(4, 1, 8, 8), torch.arange(4))
    teacher, student = build_model("smallcnn", 10, 1, 8), build_model("tinycnn", 10, 1, 8)
    generator = Generator(TINY_DISTILL.nz, TINY_DISTILL.ngf, 1, 8)
    losses = {}
    for method in ("bn-only", "ddad-priors"):
        cfg = dataclasses.replace(TINY_DISTILL, **METHODS[method].overrides)
        trainer = DDADTrainer(cfg, teacher, student, generator, test_set, info)
        loss, parts, *_ = trainer.generator_loss(
            torch.randn(8, cfg.nz, generator=torch.Generator().manual_seed(1))
        )
        losses[method] = (loss.item(), parts[0].item())
        trainer.bn_hooks.remove()
    (bn_only, _), (priors, l1) = losses["bn-only"], losses["ddad-priors"]
    assert l1 > 0
    assert priors == pytest.approx(bn_only - l1, rel=1e-5)
