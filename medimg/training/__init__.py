"""The workshop: everything that makes a model, never imported by serving code.

- :mod:`~medimg.training.tasks`: the task registry (:data:`TASKS`, :func:`get_task`, :func:`load_task_split`).
- :mod:`~medimg.training.data`, :mod:`~medimg.training.datasets`: splits in memory, augmentation
  (torchvision.transforms.v2), a user's CSV-labelled folder.
- :mod:`~medimg.training.loop`: :class:`TrainConfig` and :func:`train` (AMP and channels_last on CUDA, DDP under
  torchrun, resumable checkpoints).
- :mod:`~medimg.training.calibration`: temperature scaling; :mod:`~medimg.training.gate_fit`: the
  out-of-distribution gate; :mod:`~medimg.training.reference_sets`: what the gate must refuse.
- :mod:`~medimg.training.grades`: the grade-aware auxiliary loss for Bethesda classes (``--grade-weight``).
- :mod:`~medimg.training.evaluation`: a split's EvalReport; :mod:`~medimg.training.baselines`: HOG + linear
  classifiers.

Only ``medimg.cli`` and the educators' training-lab worker (lazily) import it; a test enforces the rule.
"""
