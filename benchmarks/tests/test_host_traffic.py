"""No host round trip in any hot loop: a training step never makes the host wait for the device.

The real loops (teacher, KD baseline, fine-tuning, students one by one and fused, guided by one parent or by
several fused ones, dense targets with drop) run on the meta device, counted by ``benchmarks.host_traffic``:
each extra step must add no value read back and no host-to-device copy. Before the epoch's augmentation was
drawn up front, every augmented step copied its crops and flips to the device (2 copies a step)."""
import copy

import pytest
import torch

from tadist_utils import models
from benchmarks import host_traffic
from benchmarks.host_traffic import DEVICE, HostTraffic, per_step
from tadist_utils.data import Batches, DataBundle, Split, augment_draws, crop_flip
from tadist_utils.losses import kd_loss
from tadist_utils.train import Context, StudentJob, finetune_head, run_epochs, student_training, train_classifier

BATCH = 4
CTX = dict(progress=False, log=lambda line: None)


def bundle(n: int) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10)
    return DataBundle("t", tuple("abcdefghij"), split, split, split, mean=torch.full((3,), 0.5),
                      std=torch.full((3,), 0.25))


READ = "reads" if DEVICE.type == "meta" else "syncs"  # what a value read back is counted as
ON_META = pytest.mark.skipif(DEVICE.type != "meta", reason="checks the meta counter itself")


def no_round_trips(run) -> None:
    counts = per_step(run)  # reads and copies on meta; syncs on a GPU (TADIST_TRAFFIC_DEVICE=cuda)
    assert counts and all(v == 0 for v in counts.values()), counts


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_teacher_steps(tmp_path, augment, optimizer):  # meta tensors hold no data: the full VGG16 costs nothing
    teacher = Context(DEVICE, None, **CTX).model(models.teacher(10))

    def run(steps):
        train_classifier(copy.deepcopy(teacher), bundle(steps * BATCH), Context(DEVICE, None, **CTX), name="t",
                         path=tmp_path / f"t{steps}.pt", spec={}, epochs=1, lr=0.01, weight_decay=5e-4,
                         batch_size=BATCH, augment=augment, seed=0, optimizer=optimizer)
    no_round_trips(run)


@pytest.fixture
def fused_optimizers_on_meta(monkeypatch):
    """The optimisers the loops build on CUDA (``engine.fused_optimizer``), on the meta device: PyTorch lists the
    devices with fused kernels (meta is not one), and fused SGD has no meta kernel (a no-op is one: meta holds
    no data). Adam's fused kernel has one."""
    if DEVICE.type == "meta":
        import torch.optim.optimizer as optimizer_module
        import torch.utils._foreach_utils as foreach_utils
        devices = foreach_utils._get_fused_kernels_supported_devices() + ["meta"]
        for module in (foreach_utils, optimizer_module):
            monkeypatch.setattr(module, "_get_fused_kernels_supported_devices", lambda: devices)
        lib = torch.library.Library("aten", "IMPL")
        for overload in ("_fused_sgd_", "_fused_sgd_.tensor_lr"):
            lib.impl(overload, lambda *args, **kwargs: None, "Meta")
        yield
        lib._destroy()
    else:
        yield


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_classifier_steps_under_fp16_grad_scaling(tmp_path, monkeypatch, fused_optimizers_on_meta, optimizer, fused):
    """fp16 (GPUs without bf16: T4, V100) enables a GradScaler, which the fp32 cases above never run: it skips a
    step whose gradients overflowed. For an unfused optimiser it decides that on the host, one read a step (the
    control: the counter sees it); the fused optimisers the loops build on CUDA take the overflow flag on the
    device, so the teacher's SGD, the baselines' and 'all' fine-tuning's Adam read nothing."""
    monkeypatch.setattr("tadist_utils.train.grad_scaler", lambda device, dtype: torch.amp.GradScaler(DEVICE.type))
    monkeypatch.setattr("tadist_utils.train.fused_optimizer", lambda device: {"fused": fused})
    ctx = Context(DEVICE, None, **CTX)
    model = ctx.model(models.Ensemble([models.student(2)], 10))

    def run(steps):
        train_classifier(copy.deepcopy(model), bundle(steps * BATCH), ctx, name="f", path=tmp_path / f"f{steps}.pt",
                         spec={}, epochs=1, lr=0.01, weight_decay=0.0, batch_size=BATCH, augment=False, seed=0,
                         optimizer=optimizer)
    if fused:
        no_round_trips(run)
    else:
        assert per_step(run)[READ] == 1


@pytest.mark.parametrize("augment", [True, False])
def test_kd_baseline_steps(tmp_path, augment):
    ctx = Context(DEVICE, None, **CTX)
    source, model = ctx.model(models.teacher(10)).eval(), ctx.model(models.Ensemble([models.student(2) for _ in range(2)], 10))

    def run(steps):
        train_classifier(copy.deepcopy(model), bundle(steps * BATCH), ctx, name="kd", path=tmp_path / f"k{steps}.pt",
                         spec={}, epochs=1, lr=1e-3, weight_decay=0.0, batch_size=BATCH, augment=augment, seed=0,
                         optimizer="adam", distill_from=source, loss=lambda out, y, soft: kd_loss(out, soft, y))
    no_round_trips(run)


def test_finetune_steps(tmp_path):
    ctx = Context(DEVICE, None, **CTX)
    head = torch.nn.Linear(512, 10).to(DEVICE)

    def run(steps):
        data = bundle(steps * BATCH)
        feats = {s: torch.zeros(len(getattr(data, s)), 512, device=DEVICE) for s in ("train", "val")}
        finetune_head(copy.deepcopy(head), feats, data, ctx, name="h", path=tmp_path / f"h{steps}.pt", spec={},
                      epochs=1, lr=1e-3, batch_size=BATCH, seed=0)
    no_round_trips(run)


@pytest.mark.parametrize("fuse", [False, True], ids=["loop", "fused"])
@pytest.mark.parametrize("augment", [True, False])
def test_student_steps(tmp_path, fuse, augment):
    ctx = Context(DEVICE, None, **CTX, fuse=fuse)
    parent = ctx.model(models.student(2)).eval()
    kids = [ctx.model(models.student(3)) for _ in range(2)]

    def run(steps):
        jobs = [StudentJob(f"s{i}-{steps}", copy.deepcopy(k), 128 * i, 128 * (i + 1), tmp_path / f"s{i}-{steps}.pt", {})
                for i, k in enumerate(kids)]
        run_epochs(student_training(parent, jobs, bundle(steps * BATCH), ctx, epochs=1, lr=1e-3, weight_decay=0.0,
                                    batch_size=BATCH, augment=augment, seed=0), ctx)
    no_round_trips(run)


@pytest.mark.parametrize("fuse", [False, True], ids=["loop", "fused"])
def test_densely_guided_steps_with_fused_guides(tmp_path, fuse):
    # two frozen level-2 guides of one architecture (one fused network when fused), targets dropped at random
    ctx = Context(DEVICE, None, **CTX, fuse=fuse)
    guides = [ctx.model(models.student(2)).eval() for _ in range(2)]
    kid = ctx.model(models.student(3))

    def run(steps):
        jobs = [StudentJob(f"d-{steps}", copy.deepcopy(kid), 0, 128, tmp_path / f"d{steps}.pt", {},
                           targets=((0, 0, 128), (1, 128, 256)))]
        run_epochs(student_training(guides, jobs, bundle(steps * BATCH), ctx, epochs=1, lr=1e-3, weight_decay=0.0,
                                    batch_size=BATCH, augment=True, seed=0, drop=0.5), ctx)
    no_round_trips(run)


@ON_META
def test_the_counter_sees_what_a_gpu_would_wait_for():
    """The counter itself: a per-batch copy to the device and a per-step read are each counted once a step."""
    def run(steps):
        x = torch.zeros(4, device=DEVICE)
        for _ in range(steps):
            x += torch.ones(4).to(DEVICE)       # a host-to-device copy
            float(x.sum())                      # a read
            x.tolist()                          # a copy back to the host
            torch.ones(4, device=DEVICE).sum()  # made on the device: neither
    assert per_step(run) == dict(reads=2, copies=1)
    assert host_traffic.count(lambda: torch.ones(3).to(DEVICE).cpu()) == dict(reads=1, copies=1)


@ON_META
@pytest.mark.parametrize("every", [1, 2, 3, 5, 7])
def test_a_round_trip_every_few_steps_shows(every):
    """A read every k-th step (a loss printed now and then) is one too many on a GPU's queue: it must show."""
    def run(steps):
        x = torch.zeros(4, device=DEVICE)
        for i in range(1, steps + 1):
            x += 1
            if i % every == 0:
                float(x.sum())
    assert per_step(run)["reads"] > 0


@ON_META
def test_the_counter_sees_host_data_that_reaches_the_device_inside_an_op():
    """Host data made into a device tensor (``torch.tensor(list, device=...)``, a list or host tensor as an index)
    is copied inside the op, where a dispatch mode alone sees nothing; printing a device tensor reads it. A
    host scalar in arithmetic is a kernel argument, not a copy."""
    x = torch.zeros(4, device=DEVICE)
    assert host_traffic.count(lambda: torch.tensor([1.0, 2.0], device=DEVICE)) == dict(reads=0, copies=1)
    assert host_traffic.count(lambda: torch.as_tensor([True, False], device=DEVICE)) == dict(reads=0, copies=1)
    assert host_traffic.count(lambda: x.new_tensor([1.0])) == dict(reads=0, copies=1)
    assert host_traffic.count(lambda: x[[0, 2]]) == dict(reads=0, copies=1)
    assert host_traffic.count(lambda: x[torch.tensor([0, 2])]) == dict(reads=0, copies=1)
    assert host_traffic.count(lambda: repr(x)) == dict(reads=1, copies=0)
    assert host_traffic.count(lambda: (x[1:3] * torch.tensor(2.0), x[0] + 1)) == dict(reads=0, copies=0)


def test_batches_draw_the_same_epoch_as_per_batch_draws():
    """One copy an epoch gives the very batches the per-batch draws gave (same generator order)."""
    data = bundle(25)
    loader = Batches(data.train, data, 8, torch.device("cpu"), shuffle=True, augment=True, seed=3)
    loader.set_epoch(2)
    g = torch.Generator().manual_seed(3 * 100_003 + 2)
    order = torch.randperm(25, generator=g)
    got = list(loader)
    assert len(got) == len(loader) == 3  # 25 = 8 + 8 + 9: a last batch of one joins the one before it
    for (x, y, idx), (a, b) in zip(got, [(0, 8), (8, 16), (16, 25)]):
        want = order[a:b]
        assert torch.equal(idx, want) and torch.equal(y, data.train.labels[want])
        assert torch.equal(x, loader.normalise(crop_flip(data.train.images[want], augment_draws(len(want), g))))


@ON_META
def test_an_epoch_of_batches_copies_once():
    data = bundle(64)
    loader = Batches(data.train, data, 8, DEVICE, shuffle=True, augment=True, seed=0)  # the split goes over once
    with HostTraffic() as traffic:
        batches = list(loader)
    assert len(batches) == 8 and batches[0][0].device == DEVICE
    assert (traffic.reads, traffic.copies) == (0, 1)
