"""bench/gpu_check.sh --dry-run: every step of the one-shot GPU check, on CPU with tiny shapes, so
the script a GPU machine runs once cannot rot unnoticed."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"1", "2", "3a", "3b", "4", "5", "6", "7a", "7b", "8"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def step_status(markdown: str) -> dict[str, str]:
    """Step id -> status, from the report's step table (the first table, up to a blank line)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| step | what | status"))
    status = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        status[cells[0]] = cells[2]
    return status


def test_dry_run_passes_every_step_and_writes_only_under_out(tmp_path):
    results_csv = ROOT / "bench" / "results.csv"
    before = _digest(results_csv)
    out = tmp_path / "check"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:] + log[-6000:]
    table = (out / "gpu_check.md").read_text()
    assert step_status(table) == dict.fromkeys(STEPS, "PASS"), table
    names = ("results.csv", "variants.csv", "steps.csv", "tests.xml", "top_kernels.md")
    for name in (*names, "parity/parity.md"):
        assert (out / name).stat().st_size > 0, name
    assert "**PASS: every step**" in table
    assert "fast+replay" in table and "(step 8)" in table
    assert _digest(results_csv) == before  # the benchmarks wrote their rows under OUT only


def test_a_folder_with_a_check_in_it_is_refused(tmp_path):
    (tmp_path / "gpu_check.md").write_text("an earlier check\n")
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"],
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "already holds a check's results" in run.stderr
    assert (tmp_path / "gpu_check.md").read_text() == "an earlier check\n"
