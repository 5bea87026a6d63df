"""A whole run: train, evaluate, write ``summary.json``, print a short report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from contrastlab.config import Config, ConfigError, apply_overrides, config_from_run
from contrastlab.engine.checkpoint import load_latest
from contrastlab.engine.evaluate import evaluate_run
from contrastlab.engine.setup import CUSTOM_BACKBONE, method_for, placed, prepare_run
from contrastlab.engine.trainer import CHECKPOINT, train
from contrastlab.engine.views import augment_of, with_stored_defaults
from contrastlab.eval import bf16_enabled

__all__ = ["evaluate_saved_run", "format_report", "run"]


def run(
    cfg: Config,
    *,
    resume: bool = False,
    run_dir: str | Path | None = None,
    backbone: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train then evaluate; returns the summary (also in ``RUN_DIR/summary.json``).

    ``backbone``: your own encoder instead of ``cfg.model.backbone`` (see :func:`train`).
    """
    result = train(cfg, resume=resume, run_dir=run_dir, backbone=backbone)
    st = result.state
    extra = {
        "epochs_done": st.epoch
        + (st.step_in_epoch > 0)
        * (st.step_in_epoch / max(1, len(result.train_set) // cfg.data.batch_size)),
        "steps": st.global_step,
        "train_seconds": st.train_seconds,
        "images_per_second": st.images_seen / max(st.train_seconds, 1e-9),
        "run_dir": str(result.run_dir),
        "bf16_autocast": bf16_enabled(result.device, cfg.train.amp),
    }
    return evaluate_run(
        cfg,
        result.run_dir,
        result.method,
        result.train_set,
        result.test_set,
        result.augment,
        result.device,
        extra,
    )


#: config keys ``contrastlab eval`` may change: how to evaluate, never what was trained.
EVAL_OVERRIDABLE = ("eval.", "data.data_dir=", "train.device=", "train.threads=")


def evaluate_saved_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    backbone: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Re-evaluate a saved run directory (``contrastlab eval RUN_DIR``) and rewrite its summary.

    Args:
        run_dir: a directory written by ``contrastlab train`` (config.json and last.pt).
        overrides: ``section.key=value`` strings for the evaluation settings only (``eval.*``,
            ``data.data_dir``, ``train.device``, ``train.threads``), e.g.
            ``["eval.linear_epochs=100"]``.
        backbone: for a run trained with your own encoder: an identically built module.

    Raises:
        FileNotFoundError: if ``run_dir`` has no config.json.
        ConfigError: if an override names another key (it would change the trained model).
        ValueError: if the run used a user-supplied backbone and none is given.
    """
    path = Path(run_dir)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a run directory: no config.json")
    for item in overrides:
        if not item.startswith(EVAL_OVERRIDABLE):
            raise ConfigError(
                f"contrastlab eval can only override eval.*, data.data_dir, train.device and "
                f"train.threads; got {item!r}"
            )
    if backbone is None and (path / CUSTOM_BACKBONE).is_file():
        raise ValueError(
            f"{path} was trained with a user-supplied backbone ({path / CUSTOM_BACKBONE}); "
            "re-evaluate it from Python: evaluate_saved_run(run_dir, backbone=<the same module>)"
        )
    stored = json.loads(cfg_file.read_text())
    cfg = apply_overrides(config_from_run(stored), list(overrides))
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, backbone), cfg, device)
    cfg = with_stored_defaults(cfg, stored, train_set, supervised=method.needs_labels)
    ckpt, _ = load_latest(path, CHECKPOINT)  # like --resume: last.prev.pt if last.pt is bad
    method.load_state_dict(ckpt["method"])
    state = ckpt["state"]
    augment = augment_of(cfg, train_set, method)
    previous: dict[str, Any] = {}
    if (path / "summary.json").is_file():
        previous = json.loads((path / "summary.json").read_text())
    # What the training did (its autocast included) is kept; what evaluation measures is new.
    keep = (
        "epochs_done",
        "steps",
        "train_seconds",
        "images_per_second",
        "run_dir",
        "bf16_autocast",
    )
    extra = {k: previous[k] for k in keep if k in previous}
    extra.setdefault("steps", state["global_step"])
    with torch.no_grad():
        return evaluate_run(cfg, path, method, train_set, test_set, augment, device, extra)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_report(summary: dict[str, Any]) -> str:
    """A short human-readable report of a summary."""
    lines = [
        f"{summary['method']} on {summary['dataset']}: {_fmt(summary.get('epochs_done'), '.2f')} epochs, "
        f"{_fmt(summary.get('train_seconds'), '.0f')} s, {_fmt(summary.get('images_per_second'), '.0f')} images/s",
        f"  linear probe top-1 {_fmt(summary.get('linear_top1'))}%   (untrained encoder {_fmt(summary.get('untrained_linear_top1'))}%)",
        f"  weighted kNN top-1 {_fmt(summary.get('knn_top1'))}%   (untrained encoder {_fmt(summary.get('untrained_knn_top1'))}%)",
        f"  alignment {_fmt(summary.get('alignment'), '.3f')}  uniformity {_fmt(summary.get('uniformity'), '.3f')}  "
        f"tolerance {_fmt(summary.get('tolerance'), '.3f')}  final τ {_fmt(summary.get('final_temperature'), '.3f')}",
        f"  run directory: {summary.get('run_dir', '?')}",
    ]
    return "\n".join(lines)
