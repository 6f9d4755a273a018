"""On real CIFAR-10 images (from ../shared, skipped when absent) a short teacher run beats chance widely."""
from tadist_utils.config import make_config
from tadist_utils.experiments import Pipeline


def test_short_teacher_run_beats_chance_on_cifar10(cifar10_jpeg_dir, tmp_path):
    cfg = make_config("smoke", dataset="cifar10", data_dir=str(cifar10_jpeg_dir), train_size=2000, val_size=500,
                      test_size=1000, teacher_epochs=4, batch_size=64, augment=False, progress=False,
                      results_dir=str(tmp_path / "r"), experiments=("direct",), levels=1)
    pipe = Pipeline(cfg)
    assert pipe.data.name == "cifar10" and len(pipe.data.classes) == 10
    pipe.teacher()
    acc = pipe.store.results().query("model == 'teacher' and metric == 'test_accuracy'").value.item()
    # chance is 10%; on 1,000 test images its s.d. is 0.95 points, so 20% is ~10 s.d. above chance.
    # Measured: 24.3% after 3 epochs (2 cores, CPU bf16) -- a VGG16 from scratch starts slowly.
    assert acc > 20.0, f"teacher reached only {acc:.1f}% (chance is 10%)"
