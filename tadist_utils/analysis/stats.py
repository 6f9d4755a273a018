"""Statistics over seeds: which of the paper's differences survive several runs.

The paper reports one run per number and differences of about one point; this module turns the tidy
``results.csv`` (columns dataset, experiment, model, seed, metric, value) into

``summarise``     n, mean, sd, sem and a Student-t confidence interval per (experiment, model), for every
                  ensemble (``ensemble_N``) and the teacher, whatever the experiment is called;
``per_seed``      the teacher and ensemble rows of one metric, one value per (experiment, model, seed);
``paired``        a - b per ensemble size, paired on seed (seeds present in both only): mean difference,
                  its t interval, the paired t-test (``scipy.stats.ttest_rel``) beside the exact sign-flip
                  permutation test, both Holm-corrected, and how many seeds a won;
``differences``   the per-seed differences behind ``paired``;
``paired_all``    ``paired`` for every pair of a list of experiments;
``comparisons``   every paired comparison behind the paper's three conclusions, with its outcome;
``conclusions``   one verdict per conclusion, with the regime it comes from;
``seed_plan``     the 80%-power detectable difference and the seeds a 1-point difference needs;
``markdown_table``/``formatted_table``  "mean ± CI half-width (n=k)" per experiment and ensemble size.

The rules (Holm's correction, what a comparison's outcome and a conclusion's verdict mean) are in the modules
that apply them; this one gathers their public names for the notebooks (``from tadist_utils.analysis import stats``):

``claims``         the declared families (``FAMILIES``: C1-C3, the paper's conclusions as it states them; B1,
                   notebook 06's exploratory table), the only groupings a p-value is corrected and quoted in;
``seed_summary``   ``per_seed``, ``summarise``, ``formatted_table``, ``markdown_table``, ``experiment_order``;
``paired_tests``   ``paired``, ``paired_all``, ``differences``, ``outcome``, ``sign_flip_p`` (the exact
                   permutation test beside the t-test), ``correct_family``, and which models are the same by
                   construction (``share_students``, ``members``, ``same_by_construction``);
``paper_claims``   ``family_comparisons`` (one declared family, run), ``comparisons``, ``conclusions``,
                   ``conclusions_markdown``, ``regime``, and ``seed_plan`` (per comparison: the 80%-power
                   detectable difference now, and how many seeds would find a 1-point difference);
``power``          ``detectable`` (80%-power minimum detectable difference) and ``seeds_needed``.
"""
from __future__ import annotations

from .claims import BEYOND_FAMILIES, FAMILIES, PAPER_FAMILIES, Comparison, Family, family
from .paired_tests import (CONTRADICTS, CORRECTION, EQUAL, SUPPORTS, UNCLEAR, correct_family, differences, members,
                           outcome, paired, paired_all, same_by_construction, share_students, sign_flip_p)
from .paper_claims import (CLAIMS, HOLDS, INCONCLUSIVE, NOT_HOLD, NOT_RUN, PARTLY, comparisons, conclusions,
                           conclusions_markdown, family_comparisons, regime, seed_plan)
from .power import detectable, seeds_needed
from .seed_summary import KNOWN_ORDER, LEVEL, experiment_order, formatted_table, markdown_table, per_seed, summarise

__all__ = ["BEYOND_FAMILIES", "CLAIMS", "CONTRADICTS", "CORRECTION", "Comparison", "EQUAL", "FAMILIES", "Family",
           "HOLDS", "INCONCLUSIVE", "KNOWN_ORDER", "LEVEL", "NOT_HOLD", "NOT_RUN", "PAPER_FAMILIES", "PARTLY",
           "SUPPORTS", "UNCLEAR", "comparisons", "conclusions", "conclusions_markdown", "correct_family",
           "detectable", "differences", "experiment_order", "family", "family_comparisons", "formatted_table",
           "markdown_table", "members", "outcome", "paired", "paired_all", "per_seed", "regime",
           "same_by_construction", "seed_plan", "seeds_needed", "share_students", "sign_flip_p", "summarise"]
