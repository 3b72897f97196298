"""DDAD under torchrun with gloo: the global BN term, the loss scaling, a whole 2-rank run."""

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_same_tensors, distill_argv, run_weights

from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.data import load_dataset
from ddad_fast.distributed import SINGLE, DistContext, global_bn_stats_loss, per_rank_batch
from ddad_fast.errors import ConfigError
from ddad_fast.losses import bn_stats_loss
from ddad_fast.metrics import read_metrics
from ddad_fast.model_io import load_model
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer

TESTS = Path(__file__).parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is needed",
)


def _torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` (a free port), with the output captured."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 63, 4, 4), (8, 16, 1, 1), (5, 4, 3, 9)])
def test_global_bn_loss_on_one_process_equals_the_reference(shape):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 3 + 5).requires_grad_()
    rm = torch.randn(shape[1], generator=gen) + 5
    rv = torch.rand(shape[1], generator=gen) * 9 + 0.5
    ours = global_bn_stats_loss(x, rm, rv)
    (grad_ours,) = torch.autograd.grad(ours, x)
    ref = bn_stats_loss(x, rm, rv)
    (grad_ref,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-4, atol=1e-6)


def test_the_global_batch_is_shared_evenly():
    assert per_rank_batch(256, SINGLE) == 256
    assert per_rank_batch(256, DistContext(rank=1, world_size=4)) == 64
    with pytest.raises(ConfigError, match="batch_size 250 is the global batch .* 4 ranks"):
        per_rank_batch(250, DistContext(world_size=4))
    with pytest.raises(ConfigError, match="leaves 1 image per rank"):
        per_rank_batch(4, DistContext(world_size=4))


@pytest.mark.parametrize("world_size", [1, 2])
def test_sync_bn_is_refused_on_cpu_in_one_line(tiny_distill, world_size):
    _, test_set, info = load_dataset("digits")
    cfg = dataclasses.replace(tiny_distill, sync_bn=True)
    models = (build_model("smallcnn", 10, 1, 8), build_model("tinycnn", 10, 1, 8))
    generator = Generator(cfg.nz, cfg.ngf, 1, 8)
    with pytest.raises(ConfigError, match="sync_bn needs CUDA GPUs"):
        DDADTrainer(cfg, *models, generator, test_set, info, dist=DistContext(0, world_size))


@needs_gloo
@pytest.mark.parametrize("backend", ["eager", "fast"])
def test_two_ranks_of_b_give_the_loss_and_gradients_of_one_rank_of_2b(
    backend, digits_teacher, tmp_path, one_thread
):
    sys.path.insert(0, str(TESTS))
    try:
        from dist_probe import probe
    finally:
        sys.path.remove(str(TESTS))
    single = probe(str(digits_teacher), str(tmp_path / "single"), backend)
    out = tmp_path / "probe.pt"
    args = [str(TESTS / "dist_probe.py"), str(digits_teacher), str(out), backend]
    run = _torchrun(args, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out, weights_only=True)
    assert int(two["world_size"]) == 2 and int(single["world_size"]) == 1
    # [L1, BN term, generator loss]: the same global values, and the same generator gradients
    torch.testing.assert_close(two["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert single["losses"][1] > 0.1  # the BN term is really there
    torch.testing.assert_close(two["grads"], single["grads"], rtol=1e-4, atol=1e-6)
    # The fast backend compiles generator_loss into one graph on every world size (the BN term's
    # all-reduce traced inside), with no graph break; student_loss has no collective, and its
    # 2-rank compilation is exercised by the step-for-step test below.
    assert int(two["graphs"]) == (1 if backend == "fast" else 0), int(two["graphs"])
    assert int(two["graph_breaks"]) == 0


@needs_gloo
def test_two_rank_fast_follows_two_rank_eager_step_for_step(tiny_distill, tmp_path, one_thread):
    # The single-process parity test's setting and tolerances (test_fast_backend.py, SGD: the
    # first iteration within 1e-5, the next five within 1e-2, 3-6x the worst measured there): the
    # ranks add one all-reduce of the gradients and of the BN sums, the same in both backends.
    cfg = dataclasses.replace(
        tiny_distill, epoch_iters=6, student_steps=5, batch_size=64, nz=32, ngf=16, lr_student=0.05
    )
    losses = {}
    for backend in ("eager", "fast"):
        settings = tmp_path / f"{backend}.json"
        out = dataclasses.replace(cfg, backend=backend, out_dir=str(tmp_path / backend))
        settings.write_text(json.dumps(dataclasses.asdict(out)))
        result = tmp_path / f"{backend}.pt"
        run = _torchrun([str(TESTS / "dist_epoch.py"), str(settings), str(result)], tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        losses[backend] = torch.load(result, weights_only=True)
    torch.testing.assert_close(losses["fast"][0], losses["eager"][0], rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["fast"][1:], losses["eager"][1:], rtol=1e-2, atol=0)


@needs_gloo
def test_torchrun_two_ranks_runs_ddad_like_one_process(tiny_distill, tmp_path, one_thread):
    one = dataclasses.replace(tiny_distill, out_dir=str(tmp_path / "one"))
    build_trainer(one).fit()
    two = dataclasses.replace(tiny_distill, out_dir=str(tmp_path / "two"))
    run = _torchrun(["-m", "ddad_fast", *distill_argv(two)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("distill: teacher") == 1  # rank 0 alone reports
    rows = read_metrics(tmp_path / "two" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # rank 0 alone logs
    last = load_checkpoint(tmp_path / "two" / "last.pt")
    assert last["epoch"] == 3 and len(last["noise_rngs"]) == 2
    assert not torch.equal(*last["noise_rngs"])  # each rank drew its own noise
    load_model(tmp_path / "two" / "best.pt", num_classes=10)
    # Same settings, same global batch: the same losses up to the noise (and per-rank BN batches)
    for r1, r2 in zip(read_metrics(tmp_path / "one" / "metrics.csv"), rows, strict=True):
        for key in ("loss_student", "l1_generator", "bn_loss"):
            assert r2[key] == pytest.approx(r1[key], rel=0.3), (r1["epoch"], key)


# The fast variant (a minute of compiling on two cores) runs with `make test-slow`: the stop
# travels through the loop, not the compiled functions, and the fast kill -9 test below resumes.
@needs_gloo
@pytest.mark.parametrize("backend", ["eager", pytest.param("fast", marks=pytest.mark.slow)])
def test_sigterm_to_torchrun_checkpoints_and_every_rank_exits_0(
    backend, tiny_distill, tmp_path, one_thread
):
    cfg = dataclasses.replace(
        tiny_distill, out_dir=str(tmp_path / "run"), epochs=500, backend=backend
    )
    python = " ".join(map(shlex.quote, [sys.executable, "-m", "ddad_fast", *distill_argv(cfg)]))
    # Each worker runs under a shell that records its exit status (the shell outlives the signal).
    worker = f"trap : TERM; {python}; echo $? > {tmp_path}/rc.$RANK"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.Popen(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "--no-python", "bash", "-c", worker],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = Path(cfg.out_dir) / "metrics.csv"
    deadline = time.monotonic() + 300  # two ranks compiling on two cores: about a minute
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # one epoch done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to torchrun, which forwards it to the workers
    out, err = proc.communicate(timeout=120)
    assert "distill: stopped by SIGTERM" in out, err[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rc.{rank}").read_text().strip() == "0", rank
    last = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    assert last["epoch"] >= 1 and len(last["noise_rngs"]) == 2
    # One process goes on from the 2-rank checkpoint (its noise reseeded)
    trainer = build_trainer(dataclasses.replace(cfg, resume=True))
    assert trainer.fit(stop_after=1).epochs == last["epoch"] + 1


# The fast variant (three 2-rank compilations, 1.5 minutes on two cores) runs with `make
# test-slow`; CI runs the eager one, and the fast backend's 2-rank steps are checked above.
@needs_gloo
@pytest.mark.parametrize("backend", ["eager", pytest.param("fast", marks=pytest.mark.slow)])
def test_kill_9_of_every_rank_then_torchrun_resume_ends_as_an_uninterrupted_run(
    backend, tiny_distill, tmp_path, one_thread
):
    cfg = dataclasses.replace(tiny_distill, backend=backend)
    straight = dataclasses.replace(cfg, out_dir=str(tmp_path / "straight"))
    assert _torchrun(["-m", "ddad_fast", *distill_argv(straight)], tmp_path).returncode == 0
    run = dataclasses.replace(cfg, out_dir=str(tmp_path / "run"))
    n = cfg.epoch_iters + 2  # every rank dies by SIGKILL after its 6th generator step (epoch 2)
    fault = [str(TESTS / "fault_driver.py"), "kill-at-step", str(n), *distill_argv(run)]
    killed = _torchrun(fault, tmp_path)
    assert killed.returncode != 0 and "fault: 6 steps done" in killed.stderr
    assert load_checkpoint(Path(run.out_dir) / "last.pt")["epoch"] == 1  # epoch 2 is lost
    resumed = _torchrun(["-m", "ddad_fast", *distill_argv(dataclasses.replace(run, resume=True))],
                        tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ours, theirs = Path(run.out_dir) / "last.pt", Path(straight.out_dir) / "last.pt"
    assert load_checkpoint(ours)["epoch"] == cfg.epochs
    assert_same_tensors(run_weights(ours), run_weights(theirs))
