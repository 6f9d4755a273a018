"""tadist: teacher-assistant knowledge distillation with dense-feature (chunked) students.

Modules, one idea each: ``models`` (architectures), ``losses`` (chunked distillation),
``plans`` (who learns from whom), ``data`` (device-resident datasets), ``train`` (loops),
``checkpoint`` (atomic, resumable), ``experiments`` (the paper's pipeline), ``results`` (tables),
``config`` (profiles), ``engine`` (device and precision), ``reproduce`` (papermill runner),
``bench`` (fast path vs plain loop).
"""
__version__ = "0.1.0"
