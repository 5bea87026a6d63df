"""The training engine: loop, checkpoints, logging, optimisers, schedules, diagnostics,
evaluation of a run, and the distributed helpers.

The usual entry points::

    from contrastlab.config import Config
    from contrastlab.engine.run import run          # train + evaluate + summary.json
    summary = run(Config())

Submodules: :mod:`~.trainer` (the loop, exact resume), :mod:`~.evaluate` (kNN, linear probe,
summary), :mod:`~.diagnostics` (per-epoch representation metrics), :mod:`~.checkpoint` (atomic,
``weights_only``), :mod:`~.logging` (JSONL, TensorBoard, progress bars), :mod:`~.optim` (SGD, LARS,
AdamW with bias/norm exclusion), :mod:`~.schedule` (warmup + cosine), :mod:`~.views` (a run's training views, also when resumed
or re-evaluated), :mod:`~.distributed`.
"""
