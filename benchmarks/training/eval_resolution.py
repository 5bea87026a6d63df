"""Issue-5 measurement (twenty-ninth round): read a saved encoder at other test-time sides,
choosing the side on held-out training images (FixRes).

SimCLR, MoCo v2 and BYOL train on random crops (20-100% of the image) resized to 20×20 views and
are evaluated on whole 28×28 images. Touvron et al. 2019 ("Fixing the train-test resolution
discrepancy") show that such crops make objects look larger in training than in the whole test
image, and that reading the test images at a larger side, with the BatchNorm statistics
recomputed at that side, recovers accuracy. The seventh round saw +0.4-0.55 probe points at
32×32 on the test split (before PreciseBN existed), but chose the side on the test split.

Here the side is chosen on a **validation split carved from the training images**, never on the
test split. For each run directory and side, the backbone is loaded from ``last.pt`` and:

1. its BN statistics are recomputed over the run's ``train.precise_bn`` unaugmented training
   images (the same seeded subset as at the end of training) resized to that side; at the
   images' own side this reproduces the run's encoder;
2. the features of the 60,000 training and 10,000 test images are extracted at that side;
3. ``val``: a seeded 10,000 of the training images are held out, the kNN bank and the linear
   probe use the other 50,000, and both score the held-out 10,000;
4. ``test``: kNN and linear probe as ``contrastlab eval`` (all 60,000 training images, scored on
   the test split).

The side with the best validation probe is marked; one JSON line per run and side goes to stdout
and, with ``--out``, is appended to a file. Nothing in the run directory changes.

    python benchmarks/training/eval_resolution.py runs/bench-training/simclr-s0-10.0m-v29-base \\
        --sides 28,32,36
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from eval_target import emit_jsonl  # same folder: the script's directory is on sys.path

from contrastlab.config import apply_overrides, config_from_run
from contrastlab.engine.checkpoint import load_checkpoint
from contrastlab.engine.evaluate import read_out, split_features
from contrastlab.engine.setup import method_for, placed, precise_bn_pass, prepare_run
from contrastlab.engine.trainer import CHECKPOINT
from contrastlab.engine.views import with_stored_defaults

#: training images held out to choose the side, and the seed of their choice.
VAL_IMAGES = 10_000
VAL_SEED = 1234


def evaluate_sides(run_dir: Path, sides: list[int], threads: int) -> list[dict[str, Any]]:
    """One result dict per side for the encoder saved in ``run_dir`` (see the module doc)."""
    stored = json.loads((run_dir / "config.json").read_text())
    cfg = apply_overrides(config_from_run(stored), [f"train.threads={threads}"])
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, None), cfg, device)
    cfg = with_stored_defaults(cfg, stored, train_set, supervised=method.needs_labels)
    state = load_checkpoint(run_dir / CHECKPOINT)["method"]
    saved = json.loads((run_dir / "summary.json").read_text())
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(VAL_SEED))
    val_idx, fit_idx = order[:VAL_IMAGES], order[VAL_IMAGES:]
    labels = train_set.labels.cpu()
    rows: list[dict[str, Any]] = []
    for side in sides:
        method.load_state_dict(state)
        t0 = time.perf_counter()
        if cfg.train.precise_bn:
            precise_bn_pass(cfg, method, train_set, device, side=side)
        with torch.no_grad():
            feats = split_features(method.backbone, train_set, test_set, cfg, device, side=side)
        train_f = feats["train"]
        val = read_out(cfg, train_f[fit_idx], labels[fit_idx], train_f[val_idx], labels[val_idx])
        test = read_out(cfg, train_f, labels, feats["test"], test_set.labels.cpu())
        rows.append(
            {
                "run": run_dir.name,
                "side": side,
                "val_linear_top1": round(val["linear_top1"], 2),
                "val_knn_top1": round(val["knn_top1"], 2),
                "test_linear_top1": round(test["linear_top1"], 2),
                "test_knn_top1": round(test["knn_top1"], 2),
                "saved_linear_top1": saved.get("linear_top1"),
                "saved_knn_top1": saved.get("knn_top1"),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    best = max(rows, key=lambda r: r["val_linear_top1"])
    for row in rows:
        row["chosen_on_val"] = row is best
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", type=Path)
    p.add_argument("--sides", default="28,32", help="comma-separated test-time sides (even)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="append the JSON lines to this file too")
    args = p.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    if not sides or min(sides) < 8 or any(s % 2 for s in sides):
        p.error(f"--sides needs even sides >= 8, got {args.sides!r}")
    for run_dir in args.run_dirs:
        emit_jsonl(evaluate_sides(run_dir, sides, args.threads), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
