"""Training, export and evaluation of the shipped restoration models (needs ``torch``).

Only :mod:`models.training.degradations`, :mod:`models.training.baselines` and
:mod:`models.training.metrics` are torch-free, so the server and tests can use them alone.
"""
