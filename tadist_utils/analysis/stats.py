"""Statistics over seeds: which of the paper's differences survive several runs.

The paper reports one run per number and differences of about one point; this module turns the tidy
``results.csv`` (columns dataset, experiment, model, seed, metric, value) into

``summarise``     n, mean, sd, sem and a Student-t confidence interval per (experiment, model), for every
                  ensemble (``ensemble_N``) and the teacher, whatever the experiment is called;
``per_seed``      the teacher and ensemble rows of one metric, one value per (experiment, model, seed);
``paired``        a - b per ensemble size, paired on seed (seeds present in both only): mean difference,
                  its t interval, the paired t-test (``scipy.stats.ttest_rel``) and how many seeds a won;
``differences``   the per-seed differences behind ``paired``;
``paired_all``    ``paired`` for every pair of a list of experiments;
``comparisons``   every paired comparison behind the paper's three conclusions, with its outcome;
``conclusions``   one verdict per conclusion;
``markdown_table``/``formatted_table``  "mean ± CI half-width (n=k)" per experiment and ensemble size.

The rules (Holm's correction, what a comparison's outcome and a conclusion's verdict mean) are in the modules
that apply them; this one gathers their public names for the notebooks (``from tadist_utils.analysis import stats``):

``seed_summary``   ``per_seed``, ``summarise``, ``formatted_table``, ``markdown_table``, ``experiment_order``;
``paired_tests``   ``paired``, ``paired_all``, ``differences``, ``outcome``, and which models are the same by
                   construction (``share_students``, ``members``, ``same_by_construction``);
``paper_claims``   ``comparisons``, ``conclusions``, ``conclusions_markdown`` and the claims themselves.
"""
from __future__ import annotations

from .paired_tests import (CONTRADICTS, CORRECTION, EQUAL, SUPPORTS, UNCLEAR, differences, members, outcome, paired,
                           paired_all, same_by_construction, share_students)
from .paper_claims import (CLAIMS, HOLDS, INCONCLUSIVE, NOT_HOLD, NOT_RUN, PARTLY, comparisons, conclusions,
                           conclusions_markdown)
from .seed_summary import KNOWN_ORDER, LEVEL, experiment_order, formatted_table, markdown_table, per_seed, summarise

__all__ = ["CLAIMS", "CONTRADICTS", "CORRECTION", "EQUAL", "HOLDS", "INCONCLUSIVE", "KNOWN_ORDER", "LEVEL", "NOT_HOLD",
           "NOT_RUN", "PARTLY", "SUPPORTS", "UNCLEAR", "comparisons", "conclusions", "conclusions_markdown",
           "differences", "experiment_order", "formatted_table", "markdown_table", "members", "outcome", "paired",
           "paired_all", "per_seed", "same_by_construction", "share_students", "summarise"]
