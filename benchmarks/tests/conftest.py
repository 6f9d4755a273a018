import pytest

# `slow` (pytest.ini): these time steps or start a process; `python -m pytest -m "not slow"` leaves them out
SLOW_MODULES = {"test_gpu_check", "test_host_traffic"}
SLOW_TESTS = {"test_quick_bench_writes_json", "test_ops_of_the_direct_plans_15_students_fall_to_those_of_4_networks_when_fused",
              "test_paper_estimate_covers_every_group_of_the_paper_profile", "test_cli_quick_writes_json_and_csv",
              "test_exports_round_trip"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
