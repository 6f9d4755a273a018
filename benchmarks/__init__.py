"""Development tooling beside the package, never imported by it: how fast, how many operators, how many host
round trips, how large, and what it ran on. Run from the repository root as ``python -m benchmarks.<name>``.

``bench``          the fast path against a plain torchvision/PIL fp32 loop (teacher; students: reference vs
                   per-student loop vs fused), as a JSON under ``benchmarks/results/bench/``;
``step_profile``   the bench's ops, guides and paper cases: operator calls per step, the paper profile's time;
``host_traffic``   host round trips per training step (reads back, copies to the device), counted on ``meta``;
``cost``           notebook 06's cost table measured in full, with ``export``'s TorchScript and ONNX round trips,
                   as a JSON and CSV under ``benchmarks/results/cost/``;
``machine``        what a timing ran on (``torch.utils.collect_env``, ``lscpu``, the load average).
"""
