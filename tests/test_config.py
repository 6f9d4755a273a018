"""Settings: strings read as their types, one-line errors, roles declared once, threads (more bad values: test_bad_input.py)."""
import re

import pytest
import torch

from tadist_utils.config import ConfigError, make_config


def test_imagefolder_dir_checks(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path / "nope"))
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match="lacks test/"):
        make_config("smoke", dataset="imagefolder", data_dir=str(tmp_path))


def test_strings_from_the_command_line_are_coerced():
    cfg = make_config("smoke", teacher_epochs="3", augment="false", experiments="direct,single_ta", test_size="None")
    assert cfg.teacher_epochs == 3 and cfg.augment is False and cfg.experiments == ("direct", "single_ta")
    assert cfg.test_size is None


def test_config_error_is_one_line_in_jupyter():
    """IPython shows ``_render_traceback_`` instead of a traceback: a ConfigError in any cell is one line."""
    with pytest.raises(ConfigError) as info:
        make_config("smoke", teacher_epochs=-3)
    assert info.value._render_traceback_() == ["ConfigError: teacher_epochs must be a positive integer, got -3"]


def test_threads_setting_reaches_torch():
    from tadist_utils.train import Context
    before = torch.get_num_threads()
    try:
        Context.from_config(make_config("smoke", dataset="digits", threads="1"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    """threads=None: the cores no other running process uses (2 threads beside other jobs trained 4x slower)."""
    import os
    from pathlib import Path

    from tadist_utils import engine
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= engine.default_threads() <= cores
    real = Path.read_text
    busy = lambda self, *a, **k: "5.0 4.0 3.0 99/200 1\n" if str(self) == "/proc/loadavg" else real(self, *a, **k)  # noqa: E731
    monkeypatch.setattr(Path, "read_text", busy)
    assert engine.default_threads() == 1  # 98 other processes running: one thread
    idle = lambda self, *a, **k: "0.0 0.0 0.0 1/200 1\n" if str(self) == "/proc/loadavg" else real(self, *a, **k)  # noqa: E731
    monkeypatch.setattr(Path, "read_text", idle)
    assert engine.default_threads() == cores  # only this process: every core


def test_only_image_files_are_listed(tmp_path):
    """What an ImageFolder listing counts (imagefolder.list_images, the cache key, the check that a class has images):
    files with an image suffix, any case, sorted by name; not a text file, a hidden '.jpg', a folder named a.png."""
    from tadist_utils.data import imagefolder as data
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            (d / "notes.txt").write_text("x")
            (d / ".jpg").write_bytes(b"x")
            (d / "a.png").mkdir()
            if cls == "cat":
                (d / "b.PNG").write_bytes(b"x")
                (d / "a.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"train/dog holds no images"):
        data.list_images(tmp_path)
    for split in ("train", "test"):
        (tmp_path / split / "dog" / "c.jpg").write_bytes(b"x")
    assert [p.rpartition("/")[2] for p, _ in data.list_images(tmp_path)[1]["train"]] == ["a.jpg", "b.PNG", "c.jpg"]
    (tmp_path / "train" / "dog" / "c.webp").write_bytes(b"x")
    (tmp_path / "test" / "dog" / "c.webp").write_bytes(b"x")
    key = data.Listing.of(tmp_path).key
    (tmp_path / "test" / "dog" / "junk.txt").write_text("more")
    assert data.Listing.of(tmp_path).key == key  # a file that is not an image changes nothing
    (tmp_path / "test" / "dog" / "c.webp").write_bytes(b"xy")
    assert data.Listing.of(tmp_path).key != key  # an image that changed does


def test_a_field_declares_its_roles_once_and_every_list_follows(monkeypatch, tmp_path):
    """Adding a setting is one line: a field declared with ``role`` reaches the settings hash, the notebook parameters,
    the runner's parameters and the sweep's teacher/S1 sharing, with no list to edit."""
    import dataclasses

    from tadist_utils import config
    from tadist_utils.runners import nbsetup, reproduce, sweep
    from tadist_utils.config import role
    extra = dataclasses.make_dataclass("Extra", [  # types as config.py spells them (annotations are strings there)
        ("warmup_epochs", "int", role(0, teacher=False, s1=True, notebook=10)),  # a setting, S1's, a notebook parameter
        ("log_every", "int", role(1, setting=False, teacher=False))], bases=(config.Config,))  # none of these
    monkeypatch.setattr(config, "Config", extra)
    monkeypatch.setattr(config, "FIELDS", {f.name: f for f in dataclasses.fields(extra)})
    cfg = make_config("smoke", dataset="digits", warmup_epochs="3", log_every="5", results_dir=str(tmp_path))
    assert type(cfg) is extra and cfg.warmup_epochs == 3
    assert config.settings_fields(cfg)["warmup_epochs"] == 3 and "log_every" not in config.settings_fields(cfg)
    assert nbsetup.notebook_parameters()[-2:] == ("warmup_epochs", "overrides")
    assert reproduce.parameters(cfg, {"warmup_epochs": "3"})["warmup_epochs"] == 3  # given: a notebook parameter
    assert "warmup_epochs" not in reproduce.parameters(cfg, {})  # not given: the injected cell stays short
    cells, stages = sweep.plan("smoke", [0], {"dataset": "digits"}, {"warmup_epochs": ["0", "1"]}, tmp_path)
    assert len({c["teacher"] for c in cells}) == 1 and len({c["s1"] for c in cells}) == 2  # one teacher, two S1s
    cells, _ = sweep.plan("smoke", [0], {"dataset": "digits"}, {"log_every": ["1", "2"]}, tmp_path)
    assert len({c["teacher"] for c in cells}) == 1 and len({c["s1"] for c in cells}) == 1


def test_the_package_lists_are_the_declared_roles():
    from tadist_utils import config
    from tadist_utils.runners import nbsetup
    assert "profile" in config.with_role("setting", False)
    assert "student_lr" not in config.with_role("teacher") and "feature_loss" in config.with_role("s1")
    assert nbsetup.PARAMETERS == nbsetup.notebook_parameters() and nbsetup.PARAMETERS[0] == "profile"


def test_the_default_experiments_are_the_papers():
    """config imports nothing from the package, so its default is spelt out; it must stay the methods' paper set."""
    from tadist_utils import config, plans
    assert config.Config().experiments == plans.PAPER_EXPERIMENTS


def test_named_choices_are_their_owners():
    """A Literal field's choices are the names its owner knows (validate checks the Literal alone)."""
    import typing

    from tadist_utils import config, losses
    hints = typing.get_type_hints(config.Config)
    assert typing.get_args(hints["feature_loss"]) == tuple(losses.FEATURE_LOSSES)
    for name in ("precision", "fuse_students", "dataset", "teacher_optimizer", "finetune_mode"):
        assert typing.get_origin(hints[name]) is typing.Literal


def test_every_check_is_in_validate(monkeypatch):
    """One place: a Config changed after make_config (``replace`` checks nothing) is refused by ``validate``."""
    from tadist_utils.config import validate
    cfg = make_config("smoke", dataset="digits")
    for bad, message in ((dict(device="tpu"), "unknown device 'tpu'"), (dict(precision="fp8"), "unknown precision"),
                         (dict(experiments=("nope",)), "unknown experiment(s) ['nope']"),
                         (dict(levels=9), "levels=9 needs a student architecture"),
                         (dict(train_size=3), "train_size=3 is too small")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(cfg.replace(**bad))
    assert validate(cfg) is cfg
