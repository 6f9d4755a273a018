"""fused.py: training siblings as one network is the same maths as training them one by one.

The step tests run in float64, where rounding is ~1e-16, so weights, BatchNorm buffers and Adam state
after several steps must agree to 1e-9 (in float32 a conv bias in front of a BatchNorm has a gradient
of pure rounding noise, which Adam scales up to a full step in either implementation, so float32 can
only be compared loosely; the train_students tests below do that).
"""
import copy
import math
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tadist_utils import models
from tadist_utils.config import make_config
from tadist_utils.data import load_data
from tadist_utils.engine import grad_scaler
from tadist_utils.fused import FusedStudents, FusedSteps
from tadist_utils.losses import chunk_losses, feature_loss
from tadist_utils.train import Context, SeparateSteps, RunState, StudentJob, keep_mask, run_epochs, student_training

CPU = torch.device("cpu")
LEVELS = (2, 3, 3, 4, 4, 4)  # mixed architectures (one fused network per level), out of chunk order
SLICES = [(0, 256, 512), (0, 0, 128), (0, 128, 256), (0, 0, 64), (0, 64, 128), (0, 448, 512)]


def runs_for(students, lr=1e-3, weight_decay=1e-4, t_max=10):
    runs = []
    for m in students:
        opt = torch.optim.Adam(m.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
        runs.append(RunState(None, {}, m, opt, sched, grad_scaler(CPU, None)))
    return runs


def separate_step(runs, wanted, x, targets, loss, keep=None):
    """The per-student step of train.train_students (``train.SeparateSteps``), in float64 without autocast."""
    return SeparateSteps(runs, wanted, Context(CPU, None, progress=False), kind=loss).step(x, targets, keep)


def assert_same_state(a, b, tol=1e-9):
    for ra, rb in zip(a, b):
        for (k, p), q in zip(ra.model.state_dict().items(), rb.model.state_dict().values()):
            torch.testing.assert_close(q, p, atol=tol, rtol=tol, msg=lambda m: f"{k}: {m}")
        for p, q in zip(ra.model.parameters(), rb.model.parameters()):
            sa, sb = ra.optimizer.state[p], rb.optimizer.state[q]
            assert float(sa["step"]) == float(sb["step"])
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(sb[name], sa[name], atol=tol, rtol=tol)
        assert ra.optimizer.param_groups[0]["lr"] == pytest.approx(rb.optimizer.param_groups[0]["lr"], rel=1e-12)
        assert ra.scheduler.state_dict() == rb.scheduler.state_dict()


@pytest.mark.parametrize("loss", ["mse", "l1", "cosine"])
def test_fused_steps_equal_separate_steps_float64(loss):
    torch.manual_seed(0)
    levels = LEVELS if loss == "mse" else LEVELS[3:]  # float64 convs are slow on a CPU: the full mix once
    students = [models.student(lv).double() for lv in levels]
    a, b = runs_for(copy.deepcopy(students)), runs_for(copy.deepcopy(students))
    wanted = [(s,) for s in SLICES[-len(levels):]]
    ctx = Context(CPU, None, progress=False, fuse=True)
    for step in range(3):  # a new FusedSteps every step: the state goes in and out each time
        x, targets = torch.randn(3, 3, 32, 32, dtype=torch.float64), [torch.randn(3, 512, dtype=torch.float64)]
        for r in a + b:
            r.model.train()
        la = separate_step(a, wanted, x, targets, loss)
        fused = FusedSteps(b, wanted, ctx, kind=loss)
        fused.train()
        lb = fused.step(x, targets)
        fused.write_back()
        torch.testing.assert_close(lb, la, atol=1e-12, rtol=1e-10)
    assert_same_state(a, b)
    # and the students still compute what they did: the fused optimiser left ordinary modules behind
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    for ra, rb in zip(a, b):
        torch.testing.assert_close(rb.model.eval()(x), ra.model.eval()(x), atol=1e-9, rtol=1e-9)


def test_fused_densely_guided_steps_equal_separate_steps_float64():
    # two level-3 students, each regressing its chunk of two guides, with targets dropped at random
    torch.manual_seed(1)
    students = [models.student(3).double() for _ in range(2)]
    a, b = runs_for(copy.deepcopy(students)), runs_for(copy.deepcopy(students))
    wanted = [((0, 0, 128), (1, 0, 128)), ((0, 128, 256), (1, 128, 256))]
    ctx = Context(CPU, None, progress=False, fuse=True)
    fused = FusedSteps(b, wanted, ctx)
    gen = torch.Generator().manual_seed(3)
    for step in range(3):
        x = torch.randn(5, 3, 32, 32, dtype=torch.float64)
        targets = [torch.randn(5, 512, dtype=torch.float64), torch.randn(5, 256, dtype=torch.float64)]
        keep = [keep_mask(2, 0.5, gen) for _ in wanted]
        for r in a:
            r.model.train()
        fused.train()
        torch.testing.assert_close(fused.step(x, targets, keep), separate_step(a, wanted, x, targets, "mse", keep),
                                   atol=1e-12, rtol=1e-10)
    fused.write_back()
    assert_same_state(a, b)


def test_fused_trainer_refuses_students_at_different_epochs():
    students = [models.student(4) for _ in range(2)]
    runs = runs_for(students)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": deliberate, to move one schedule on
        warnings.simplefilter("ignore")
        runs[1].scheduler.step()
    with pytest.raises(ValueError, match="same epoch"):
        FusedSteps(runs, [((0, 0, 64),), ((0, 64, 128),)], Context(CPU, None, progress=False, fuse=True))


def test_chunk_losses_are_each_chunks_feature_loss():
    torch.manual_seed(2)
    pred, target = torch.randn(4, 6), torch.randn(4, 6)
    for kind in ("mse", "l1", "cosine"):
        want = torch.stack([feature_loss(pred[:, i:i + 2], target[:, i:i + 2], kind) for i in (0, 2, 4)])
        torch.testing.assert_close(chunk_losses(pred, target, 3, kind), want)
    # by hand: two chunks of one column each -> per-chunk MSE is the column's mean squared difference
    p, t = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert chunk_losses(p, t, 2, "mse").tolist() == [(1 + 4) / 2, (4 + 9) / 2]
    with pytest.raises(ValueError, match="equal chunks"):
        chunk_losses(torch.zeros(2, 5), torch.zeros(2, 5), 2)


# ----------------------------------------------------------------------------- through train_students
@pytest.fixture(scope="module")
def tiny():
    cfg = make_config("smoke", dataset="digits", train_size=64, val_size=32, test_size=32, batch_size=32,
                      progress=False, threads=1)
    torch.manual_seed(0)
    teacher = models.teacher(cfg_classes := load_data(cfg).num_classes).eval().requires_grad_(False)
    return cfg, load_data(cfg), teacher, cfg_classes


def student_jobs(tmp_path, tag, levels=LEVELS):
    jobs = []
    for i, (lv, (_, a, b)) in enumerate(zip(levels, SLICES)):
        torch.manual_seed(100 + i)
        jobs.append(StudentJob(f"s{i}", models.student(lv), a, b, tmp_path / f"{tag}-s{i}.pt", dict(job=i)))
    return jobs


def train(jobs, data, teacher, fuse, epochs=2, augment=False):
    ctx = Context(CPU, None, progress=False, fuse=fuse, log=lambda *_: None)
    return run_epochs(student_training(teacher.features, jobs, data, ctx, epochs=epochs, lr=1e-3, weight_decay=0.0,
                          batch_size=32, augment=augment, seed=0), ctx)


def test_train_students_fused_matches_the_loop(tiny, tmp_path):
    """Two epochs with augmentation (the parent runs every batch), float32: equal up to float drift."""
    _, data, teacher, _ = tiny
    loop = train(student_jobs(tmp_path, "loop"), data, teacher, fuse=False, augment=True)
    fused = train(student_jobs(tmp_path, "fused"), data, teacher, fuse=True, augment=True)
    for rl, rf in zip(loop, fused):
        assert [h["epoch"] for h in rf.history] == [1, 2]
        for hl, hf in zip(rl.history, rf.history):
            assert hf["train_loss"] == pytest.approx(hl["train_loss"], rel=1e-2)
            assert hf["val_loss"] == pytest.approx(hl["val_loss"], rel=1e-2)
        assert rf.optimizer.state_dict()["state"][0]["step"] == rl.optimizer.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("epochs", [2, 3])
def test_fused_resume_and_skip_finished(tiny, tmp_path, monkeypatch, epochs):
    """Killed after 3 of 6 students saved epoch 2. With 2 epochs those three are finished and skipped, the others
    resume at epoch 1; with 3, the six resume at epochs 1 and 2, so the fused set changes between epochs."""
    _, data, teacher, _ = tiny
    whole = train(student_jobs(tmp_path, "whole"), data, teacher, fuse=True, epochs=epochs)
    saves = {"n": 0}
    real_save = RunState.save

    def dying_save(self, epochs):
        real_save(self, epochs)
        saves["n"] += 1
        if saves["n"] == 6 + 3:  # epoch 1 of all six, then three students of epoch 2
            raise KeyboardInterrupt

    monkeypatch.setattr(RunState, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(student_jobs(tmp_path, "killed"), data, teacher, fuse=True, epochs=epochs)
    monkeypatch.setattr(RunState, "save", real_save)
    built = []
    monkeypatch.setattr(FusedSteps, "__init__", lambda self, runs, *a, _init=FusedSteps.__init__, **k:
                        built.append(len(runs)) or _init(self, runs, *a, **k))
    resumed = train(student_jobs(tmp_path, "killed"), data, teacher, fuse=True, epochs=epochs)
    assert built == ([3] if epochs == 2 else [3, 6])  # a new fused set only when the set of students changes
    for rw, rr in zip(whole, resumed):
        assert len(rr.history) == epochs
        for hw, hr in zip(rw.history, rr.history):
            assert hr["val_loss"] == pytest.approx(hw["val_loss"], rel=1e-4)
    # everything finished: a third call trains nothing and returns the same weights
    again_jobs = student_jobs(tmp_path, "killed")
    counted = {"n": 0}
    monkeypatch.setattr(FusedSteps, "step", lambda *a, **k: counted.__setitem__("n", counted["n"] + 1))
    again = train(again_jobs, data, teacher, fuse=True, epochs=epochs)
    assert counted["n"] == 0
    for rr, ra in zip(resumed, again):
        for p, q in zip(rr.model.state_dict().values(), ra.model.state_dict().values()):
            assert torch.equal(p, q)
    # and the students assemble into an Ensemble as before
    ens = models.Ensemble([r.model for r in again[1:3]], num_classes=10).eval()
    assert ens(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fused_students_under_fp16_and_a_grad_scaler_as_on_a_t4(tiny, tmp_path, monkeypatch):
    """Colab's free T4 has no bf16: ``auto`` gives fp16 autocast, a GradScaler and fused Adam there, a combination no
    GPU lent to this project has run. The CPU has all three, so they run together here (the students only: fp16
    autocast is emulated on this CPU, a VGG16 step 29x slower than fp32). A first scale of 2**20 makes the first
    steps overflow: skipped for every student at once, then training goes on; each student's own scaler and Adam
    get the fused ones' state back (its Adam counts only the steps taken), and the losses stay finite."""
    _, data, _, _ = tiny
    scalers = []

    def scaler(device, dtype):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 20, enabled=dtype == torch.float16))
        return scalers[-1]

    for module in ("train", "fused"):
        monkeypatch.setattr(f"tadist_utils.{module}.grad_scaler", scaler)
    jobs = [StudentJob(f"s{i}", models.student(lv), a, b, tmp_path / f"fp16-s{i}.pt", dict(job=i))  # the smallest:
            for i, (lv, (_, a, b)) in enumerate(zip((3, 4, 4), (SLICES[1], SLICES[3], SLICES[4])))]  # 2 networks
    before = [copy.deepcopy(j.model.state_dict()) for j in jobs]
    ctx = Context(CPU, torch.float16, progress=False, fuse=True, log=lambda *_: None)
    pixels = lambda x: x.flatten(1)[:, :512]  # noqa: E731  a parent whose features cost nothing (not a fp16 VGG16)
    seen = set()

    class ConvDtypes(TorchDispatchMode):  # below autocast: the dtypes the convolutions really run in
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution.default:
                seen.add((args[0].dtype, args[1].dtype, args[-1]))
            return func(*args, **(kwargs or {}))

    with warnings.catch_warnings(record=True) as caught, ConvDtypes():
        warnings.simplefilter("always")
        runs = run_epochs(student_training(pixels, jobs, data, ctx, epochs=3, lr=1e-3, weight_decay=0.0, batch_size=16,
                              augment=False, seed=0), ctx)
    assert {d for d in seen if d[2] > 1} == {(torch.float16, torch.float16, 2)}  # the fused level-4 pair, in fp16
    # a fused optimiser is called even on a skipped step (its kernel skips), so PyTorch's "lr_scheduler.step() before
    # optimizer.step()" warning, which an unfused one's skipped first step draws, does not reach a T4's notebooks
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]
    fused_scale = scalers[-1].get_scale()  # the FusedSteps's, made last
    assert fused_scale < 2.0 ** 20  # some steps overflowed and were skipped
    skipped = math.log2(2.0 ** 20 / fused_scale)  # each halves the scale (growth_interval 2000: it never grows here)
    assert skipped == int(skipped)
    for r, w in zip(runs, before):
        assert all(math.isfinite(h[k]) for h in r.history for k in ("train_loss", "val_loss"))
        assert r.scaler.get_scale() == fused_scale  # stored back into every student
        # every student's Adam skipped exactly the skipped steps (the schedule steps on every one), stored back
        assert {float(s["step"]) for s in r.optimizer.state.values()} == {r.scheduler.last_epoch - skipped}
        assert any(not torch.equal(v, w[k]) for k, v in r.model.state_dict().items() if v.is_floating_point())


# ----------------------------------------------------------------------------- the guides' forward, fused
def frozen(net, seed):
    """A guide as the pipeline hands it over: BatchNorm running statistics of its own, eval mode, no grad."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    return net.eval().requires_grad_(False)


@pytest.fixture
def fused_forwards(monkeypatch):
    """Counts the guides' fused forward passes (FusedStudents in eval mode) and how many students each ran."""
    calls = []
    real = FusedStudents.features
    monkeypatch.setattr(FusedStudents, "features", lambda self, x: (
        calls.append(self.n_students) if not self.training else None) or real(self, x))
    return calls


def test_fused_guides_equal_the_separate_forwards_float64(fused_forwards):
    """The teacher, three level-3 students (one network), two level-4 ones (another) and a lone level-2."""
    from tadist_utils.fused import fused_guides
    levels = (3, 4, 3, 2, 4, 3)
    guides = [frozen(models.student(lv).double(), i) for i, lv in enumerate(levels)]
    guides.insert(2, frozen(models.teacher(10).double(), 9))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ctx = Context(CPU, None, progress=False, fuse=True)
    with torch.no_grad():
        want = [g.features(x) for g in guides]
        for fold_bn in (False, True):  # BatchNorm folded into the convs (an option, off in training): the same too
            fused_forwards.clear()
            got = fused_guides(guides, ctx, fold_bn=fold_bn)(x)
            assert sorted(fused_forwards) == [2, 3]  # two fused networks ran; the teacher and the level-2 alone
            assert [t.shape for t in got] == [t.shape for t in want]
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)
    # float32, channels-last (the CPU's and the GPUs' layout): equal to float rounding
    guides32 = [copy.deepcopy(g).float().to(memory_format=torch.channels_last) for g in guides]
    x32 = x.float().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = fused_guides(guides32, Context(CPU, None, channels_last=True, progress=False, fuse=True))(x32)
        for g, w in zip(got, [g.features(x32) for g in guides32]):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    # a guide in train mode (batch statistics, its buffers updated) is never fused: a frozen copy would differ
    guides[0].train()
    fused_forwards.clear()
    with torch.no_grad():
        fused_guides(guides, ctx)(x)
    assert sorted(fused_forwards) == [2, 2]


def test_train_students_with_fused_guides_gives_the_same_students_float64(tmp_path, monkeypatch, fused_forwards):
    """Augmented batches, so the guides run every step; float64 throughout (the batches too): fused guides
    (models passed) and separate forwards (feature functions passed) give the same students to 1e-9.
    Two steps of 10 images: float64 convolutions are slow on a CPU."""
    from tadist_utils.data import Batches
    data = load_data(make_config("smoke", dataset="digits", train_size=20, val_size=8, test_size=8, progress=False))
    monkeypatch.setattr(Batches, "normalise", lambda self, x: (x.double() - self.mean.double()) * self.inv_std.double())
    mini_teacher = frozen(models.ConvNet([64, "M"], None, classifier=10).double(), 7)  # another architecture
    guides = [frozen(models.student(4).double(), 10 + i) for i in range(3)] + [mini_teacher]
    guides.insert(1, frozen(models.student(3).double(), 20))  # a lone level-3 guide between the fused ones
    targets = [((0, 0, 64), (3, 0, 64)), ((2, 0, 64), (1, 64, 128)), ((4, 0, 64),)]  # drop=0.5: dense, some dropped

    def run(guides, tag):
        jobs = []
        for i, t in enumerate(targets):
            torch.manual_seed(200 + i)
            jobs.append(StudentJob(f"s{i}", models.student(4).double(), 0, 64, tmp_path / f"{tag}{i}.pt", {}, t))
        ctx = Context(CPU, None, progress=False, fuse=True, log=lambda *_: None)
        return run_epochs(student_training(guides, jobs, data, ctx, epochs=1, lr=1e-3, weight_decay=0.0, batch_size=10,
                              augment=True, seed=0, drop=0.5), ctx)

    separate = run([g.features for g in guides], "separate")
    assert fused_forwards == []
    fused = run(guides, "fused")
    assert fused_forwards == [3] * 2  # one fused forward of the three level-4 guides a step, 2 steps
    for rs, rf in zip(separate, fused):
        for (k, p), q in zip(rs.model.state_dict().items(), rf.model.state_dict().values()):
            torch.testing.assert_close(q, p, atol=1e-9, rtol=1e-9, msg=lambda m: f"{k}: {m}")
        assert rf.history[-1]["train_loss"] == pytest.approx(rs.history[-1]["train_loss"], rel=1e-9)
