"""Measuring and reading results, beside the method (which never imports from here).

``stats``             over seeds: per-seed values, mean / sd / Student-t interval, paired t and sign-flip tests with
                      Holm's correction, models identical by construction, 80%-power detectable differences;
``claims``            every family of comparisons, declared once (C1-C3 as the paper states them, B1 for 06), run,
                      with one verdict per conclusion and the seeds a plan needs;
``paper``             the paper's numbers (Table 1's accuracies, its students' final losses) and the tables that
                      set a run's results beside them;
``plots``             the notebooks' figures: plans, data, one run (00-04); side by side, over seeds, cost (05-06);
``cost``              parameters, MACs, disk size and latency of every model and ensemble (06's table; measured in
                      full, with export checks, by ``python -m benchmarks.cost``).
"""
