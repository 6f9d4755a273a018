"""tadist: teacher-assistant knowledge distillation with dense-feature (chunked) students.

The method, read in this order: ``losses`` (chunks and their regression), ``plans`` (who learns which chunk of whom;
``METHODS``, one unit per method with its loss), ``models`` (the networks), ``train`` (the one epoch loop),
``experiments`` (the pipeline). Beside it: ``fused`` (the opt-in fused students), ``engine`` (device, precision),
``config`` (settings and their one check), ``data``, ``storage`` (checkpoints, results), ``runners``
(``python -m tadist_utils``), ``analysis`` (statistics, figures). The map: docs/guide.md.
"""
__version__ = "0.1.0"
