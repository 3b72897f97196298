"""``--replay``: the memory of generated samples, replayed student steps, both backends, resume."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ddad_fast.builder import build_trainer
from ddad_fast.errors import ConfigError
from ddad_fast.replay import ReplayMemory


def _batch(value: float, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 1, 2, 2) and outputs (n, 3) filled with ``value`` (rows tell their batch)."""
    return torch.full((n, 1, 2, 2), value), torch.full((n, 3), value)


def test_the_memory_keeps_the_newest_samples_in_a_ring():
    memory = ReplayMemory(5)
    assert not memory.holds(1)
    for value in range(3):  # 6 samples into 5 slots: the first batch's first sample goes
        memory.add(*_batch(float(value)))
    assert memory.count == 5 and memory.holds(5) and not memory.holds(6)
    assert memory.images[:, 0, 0, 0].tolist() == [2.0, 0.0, 1.0, 1.0, 2.0]
    assert torch.equal(memory.images[:, 0, 0, 0], memory.outputs[:, 0])  # pairs stay together
    memory.add(*_batch(7.0, n=9))  # a batch larger than the memory: its last 5 samples
    assert memory.images.flatten().unique().tolist() == [7.0]
    memory.clear()
    assert not memory.holds(1)


def test_sampling_draws_stored_pairs_uniformly_and_reproducibly():
    memory = ReplayMemory(4)
    for value in range(2):
        memory.add(*_batch(float(value)))
    images, outputs = memory.sample(4000, torch.Generator().manual_seed(0))
    assert images.shape == (4000, 1, 2, 2) and outputs.shape == (4000, 3)
    assert torch.equal(images[:, 0, 0, 0], outputs[:, 0])
    assert images[:, 0, 0, 0].mean().item() == pytest.approx(0.5, abs=0.03)  # 2 of each value
    again, _ = memory.sample(4000, torch.Generator().manual_seed(0))
    assert torch.equal(images, again)
    with pytest.raises(RuntimeError, match="empty"):
        ReplayMemory(3).sample(1, torch.Generator())


def test_a_replayed_step_equals_a_student_step_on_the_same_images_and_teacher_outputs(
    tiny_distill,
):
    trainer = build_trainer(dataclasses.replace(tiny_distill, replay=64))
    weight = next(trainer.student.parameters())
    z = trainer.noise()
    fresh, images, t_logits = trainer.student_loss(z)
    (fresh_grad,) = torch.autograd.grad(fresh, weight)
    replayed = trainer.replayed_student_loss(images, t_logits)
    (replayed_grad,) = torch.autograd.grad(replayed, weight)
    # both against DFAD's student loss written out here: L1(student(G(z)), teacher(G(z)))
    with torch.no_grad():
        ref_images = trainer.generator(z)
        ref_t = trainer.teacher(ref_images)
    ref = F.l1_loss(trainer.student(ref_images), ref_t)
    (ref_grad,) = torch.autograd.grad(ref, weight)
    assert torch.equal(images, ref_images) and torch.equal(t_logits, ref_t)
    for loss, grad in ((fresh, fresh_grad), (replayed, replayed_grad)):
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)
    # the memory holds exactly what the steps made: a fresh step's images and teacher outputs
    trainer.student_step()
    assert trainer.memory.count == trainer.batch
    n = trainer.batch
    stored_t = trainer.teacher(trainer.memory.images[:n])
    torch.testing.assert_close(stored_t, trainer.memory.outputs[:n], rtol=1e-5, atol=1e-6)


def test_steps_replay_once_the_memory_holds_a_batch(tiny_distill):
    cfg = dataclasses.replace(tiny_distill, replay=256, student_steps=3, replay_fresh=1)
    trainer = build_trainer(cfg)
    assert not trainer.replays(1)  # empty memory: fresh images
    trainer.student_step()
    assert [trainer.replays(k) for k in range(3)] == [False, True, True]
    replayed = trainer.student_step(replay=True)
    assert torch.isfinite(replayed) and trainer.memory.count == trainer.batch  # nothing added
    trainer.generator_step()
    assert trainer.memory.count == 2 * trainer.batch  # the generator's batch is stored too


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"replay": -1}, "replay must be non-negative"), ({"replay_fresh": 2}, "leaves none")],
)
def test_replay_settings_that_cannot_work_are_refused(tiny_distill, settings, message):
    cfg = dataclasses.replace(tiny_distill, **{"replay": 64, **settings})  # student_steps=2
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_fast_follows_eager_step_for_step_with_replay(tiny_distill, tmp_path):
    # As test_fast_backend's step-for-step check (SGD: first iteration 1e-5, later 1e-2): the
    # replayed steps draw the same indices in both backends (the noise generator draws them).
    cfg = dataclasses.replace(
        tiny_distill, epoch_iters=6, student_steps=5, batch_size=64, nz=32, ngf=16,
        lr_student=0.05, replay=256,
    )  # fmt: skip
    losses = {}
    for backend in ("eager", "fast"):
        trainer = build_trainer(
            dataclasses.replace(cfg, backend=backend, out_dir=str(tmp_path / backend))
        )
        trainer.train_epoch()
        assert trainer.memory.count == 256
        losses[backend] = trainer.losses
    torch.testing.assert_close(losses["fast"][0], losses["eager"][0], rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["fast"][1:], losses["eager"][1:], rtol=1e-2, atol=0)


def test_a_run_with_replay_resumes_and_refills_its_memory(tiny_distill):
    cfg = dataclasses.replace(tiny_distill, replay=64)
    assert build_trainer(cfg).fit(stop_after=1).epochs == 1
    resumed = build_trainer(dataclasses.replace(cfg, resume=True))
    assert resumed.memory.count == 0  # last.pt does not hold the memory
    result = resumed.fit()
    assert result.epochs == cfg.epochs and resumed.memory.count == 64
