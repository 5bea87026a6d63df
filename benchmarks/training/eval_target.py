"""Issue-5 measurement (twenty-third round): evaluate the momentum encoder of a saved BYOL or
MoCo v2 run instead of its online one.

BYOL's target and MoCo v2's key backbone are exponential moving averages of the online
backbone (SPEC §6-§7). Averaged weights often make better features than the last iterate, and
on a short budget BYOL's target lags the online network by the most. For each run directory this
script re-evaluates (kNN and linear probe, as ``contrastlab eval`` does) two encoders from its
``last.pt``:

- ``online``: the backbone as saved (it should reproduce the run's ``summary.json``);
- ``target``: the online backbone's weights replaced by the momentum backbone's, then its BN
  statistics recomputed over ``train.precise_bn`` unaugmented training images (as at the end of
  training; the EMA copies the online network's BN buffers, which do not fit averaged weights).

Nothing in the run directory changes. One JSON line per run and encoder goes to stdout and,
with ``--out``, is appended to a file.

    python benchmarks/training/eval_target.py runs/bench-training/byol-s0-10.0m-v21-onedir-asym
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from contrastlab.config import apply_overrides, config_from_run
from contrastlab.engine.checkpoint import load_checkpoint
from contrastlab.engine.evaluate import evaluate_backbone
from contrastlab.engine.setup import method_for, placed, precise_bn_pass, prepare_run
from contrastlab.engine.trainer import CHECKPOINT
from contrastlab.engine.views import with_stored_defaults

#: the momentum backbone's attribute per method.
MOMENTUM_BACKBONE = {"byol": "target_backbone", "moco": "key_backbone"}


def evaluate_encoders(run_dir: Path, threads: int) -> list[dict[str, Any]]:
    """The online and the momentum encoder of ``run_dir``, each evaluated as
    ``contrastlab eval`` does (one result dict each)."""
    stored = json.loads((run_dir / "config.json").read_text())
    cfg = apply_overrides(config_from_run(stored), [f"train.threads={threads}"])
    attr = MOMENTUM_BACKBONE.get(cfg.method.name)
    if attr is None:
        raise SystemExit(f"{run_dir}: method {cfg.method.name!r} has no momentum encoder")
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, None), cfg, device)
    cfg = with_stored_defaults(cfg, stored, train_set, supervised=method.needs_labels)
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    saved = json.loads((run_dir / "summary.json").read_text())
    out: list[dict[str, Any]] = []
    for encoder in ("online", "target"):
        method.load_state_dict(ckpt["method"])
        bn_seconds = 0.0
        if encoder == "target":
            method.backbone.load_state_dict(getattr(method, attr).state_dict())
            bn_seconds = precise_bn_pass(cfg, method, train_set, device)
        with torch.no_grad():
            summary = evaluate_backbone(method.backbone, train_set, test_set, cfg, device)
        out.append(
            {
                "run": run_dir.name,
                "encoder": encoder,
                "linear_top1": summary["linear_top1"],
                "knn_top1": summary["knn_top1"],
                "saved_linear_top1": saved.get("linear_top1"),
                "saved_knn_top1": saved.get("knn_top1"),
                "precise_bn": cfg.train.precise_bn,
                "precise_bn_seconds": round(bn_seconds, 2),
                "eval_seconds": round(summary["eval_seconds"], 1),
            }
        )
    return out


def emit_jsonl(rows: list[dict[str, Any]], out: Path | None) -> None:
    """Print each row as one JSON line and, if ``out`` is set, append the lines to it."""
    lines = [json.dumps(row) for row in rows]
    for line in lines:
        print(line, flush=True)
    if out is not None:
        with out.open("a") as fh:
            fh.writelines(line + "\n" for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="append the JSON lines to this file too")
    args = p.parse_args(argv)
    for run_dir in args.run_dirs:
        emit_jsonl(evaluate_encoders(run_dir, args.threads), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
