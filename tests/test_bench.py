"""The benchmark runs end to end and writes a JSON with positive speeds and ratios for both cases."""
import json

import pytest

pytest.importorskip("sklearn")  # the digits data set ships inside scikit-learn


def test_quick_bench_writes_json(tmp_path):
    import torch
    from tadist_utils import bench

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:  # one thread: on a shared 2-core box, two threads wait on each other's time slices (several x slower)
        bench.main(["--quick", "--dataset", "digits", "--device", "cpu", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert report["machine"]["threads"] == 1 and report["machine"]["torch"]
    assert report["settings"]["dataset"] == "digits"
    for case in ("teacher", "students"):
        c = report["cases"][case]
        assert c["speedup"] > 0
        for path in ("reference", "fast"):
            assert c[path]["images_per_s"] > 0 and c[path]["wall_s"] > 0
    assert report["cases"]["students"]["students"] == 3  # --quick: S1, S01, S2 of the direct plan


def test_device_slug_is_a_file_name():
    import torch
    from tadist_utils.bench import device_slug

    slug = device_slug(torch.device("cpu"))
    assert slug.startswith("cpu-") and slug.endswith(f"-{torch.get_num_threads()}t")
    assert all(ch.isalnum() or ch == "-" for ch in slug)
