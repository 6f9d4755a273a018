"""Measuring and reading results, beside the method (which never imports from here).

``stats`` (intervals and paired tests over seeds), ``plots`` (the notebooks' figures), ``cost``
(parameters, MACs, latency, export of trained models), ``bench`` (the fast path against a plain
reference, operator calls per step, the paper profile's wall time).
"""
