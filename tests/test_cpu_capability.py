"""ATEN_CPU_CAPABILITY naming kernels the CPU lacks is one line and exit 2, not a SIGILL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddad_fast import cpu_capability
from ddad_fast.cpu_capability import check_cpu_capability
from ddad_fast.errors import ConfigError

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def avx2_only_cpu(monkeypatch):
    monkeypatch.setitem(cpu_capability.KERNEL_SETS, "avx2", lambda: True)
    monkeypatch.setitem(cpu_capability.KERNEL_SETS, "avx512", lambda: False)


@pytest.mark.parametrize("value", [None, "", "default", "avx2", "vsx"])
def test_kernel_sets_the_cpu_has_and_names_torch_ignores_pass(avx2_only_cpu, value):
    check_cpu_capability({} if value is None else {"ATEN_CPU_CAPABILITY": value})


def test_a_kernel_set_the_cpu_lacks_is_refused_naming_the_ones_it_has(avx2_only_cpu):
    with pytest.raises(ConfigError) as error:
        check_cpu_capability({"ATEN_CPU_CAPABILITY": "avx512"})
    assert "ATEN_CPU_CAPABILITY=avx512" in str(error.value)
    assert str(error.value).endswith("use one of: default, avx2")


@pytest.mark.skipif(
    torch.cpu._is_avx512_supported(), reason="this CPU runs AVX-512 kernels: nothing to refuse"
)
@pytest.mark.parametrize("command", ["cli", "pytest"])
def test_the_cli_and_the_suite_stop_in_one_line_on_this_cpu(tmp_path, command):
    argv = {
        "cli": ["-m", "ddad_fast", "distill", "--out-dir", str(tmp_path / "run")],
        "pytest": ["-m", "pytest", "-p", "no:cacheprovider", str(TESTS / "test_recipes.py")],
    }[command]
    run = subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "avx512"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "ATEN_CPU_CAPABILITY=avx512" in lines[0], lines
    assert not (tmp_path / "run").exists()
