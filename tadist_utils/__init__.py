"""tadist: teacher-assistant knowledge distillation with dense-feature (chunked) students.

The method, one idea a module (imports go one way: ``analysis`` -> these -> torch):
``models`` (networks, fused ones included), ``losses`` (chunks and their regression), ``plans`` (one unit per
method: who learns which chunk of whom, its loss; end-to-end baselines too), ``data`` + ``cifar_pickles`` (datasets,
device-resident batches),
``train`` + ``fused`` (loops; many students as one network), ``checkpoint`` (atomic, resumable runs),
``experiments`` (the pipeline's stages), ``results`` (tables), ``config`` (profiles), ``engine`` (device,
precision), ``errors``. Entry points: ``reproduce`` (papermill runner), ``experiments`` (headless),
``nbsetup`` + ``console`` (notebooks, terminal). Measuring it: ``tadist_utils.analysis``.
"""
__version__ = "0.1.0"
