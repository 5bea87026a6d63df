"""Issue-5 measurement (twenty-seventh round): the kNN's certified bf16 prefilter on the
features of saved encoders.

For each run directory, the trained encoder's features of the 60,000 training and 10,000 test
images are extracted as ``contrastlab eval`` extracts them; then the weighted kNN (the run's k
and t) is timed with the plain fp32 product and with the prefilter, alternating ``--repeats``
times, and the two are compared: the predictions must be identical and the votes equal to fp32
rounding. Also reported: the share of queries the prefilter certified (the rest were searched
again in fp32). One JSON line per run goes to stdout.

    python benchmarks/training/knn_prefilter.py runs/bench-training/simclr-s0-10.0m-v27-f2048

To time one search as a whole process (for an A/B pair of commands), save the features once
and run a single search on them:

    python benchmarks/training/knn_prefilter.py RUN_DIR --save-features /tmp/f.pt
    python benchmarks/training/knn_prefilter.py --features /tmp/f.pt --mode prefilter
    python benchmarks/training/knn_prefilter.py --features /tmp/f.pt --mode fp32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from contrastlab.config import apply_overrides, config_from_run
from contrastlab.engine.checkpoint import load_checkpoint
from contrastlab.engine.evaluate import split_features
from contrastlab.engine.setup import method_for, placed, prepare_run
from contrastlab.engine.trainer import CHECKPOINT
from contrastlab.eval import knn as knn_mod
from contrastlab.eval import knn_accuracy, knn_scores


def run_features(run_dir: Path, threads: int) -> dict[str, Any]:
    """The trained encoder's features of ``run_dir``, as ``contrastlab eval`` extracts them:
    ``train``/``test`` features and labels, ``k``, ``t`` and ``num_classes``."""
    stored = json.loads((run_dir / "config.json").read_text())
    cfg = apply_overrides(config_from_run(stored), [f"train.threads={threads}"])
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, None), cfg, device)
    method.load_state_dict(load_checkpoint(run_dir / CHECKPOINT)["method"])
    feats = split_features(method.backbone, train_set, test_set, cfg, device)
    return {
        "run": run_dir.name,
        "train": feats["train"],
        "train_labels": train_set.labels,
        "test": feats["test"],
        "test_labels": test_set.labels,
        "k": cfg.eval.knn_k,
        "t": cfg.eval.knn_t,
        "num_classes": len(train_set.classes),
    }


def measure(data: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Timings (s, best of ``repeats``) and agreement of the two kNN searches on one run."""
    feats = [data["train"], data["test"]]
    train_labels, test_labels = data["train_labels"], data["test_labels"]
    args = (feats[0], train_labels, feats[1])
    kw = {"k": data["k"], "t": data["t"], "num_classes": data["num_classes"]}
    seconds: dict[str, list[float]] = {"fp32": [], "prefilter": []}
    votes: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, prefilter in (("fp32", False), ("prefilter", True)):
            t0 = time.perf_counter()
            votes[name] = knn_scores(*args, prefilter=prefilter, **kw)  # type: ignore[arg-type]
            seconds[name].append(time.perf_counter() - t0)
    search = knn_mod._searcher(F.normalize(feats[0], dim=1), data["k"], 1024, True)
    assert isinstance(search, knn_mod._Bf16Bank)
    for start in range(0, feats[1].shape[0], 1024):
        search.top(F.normalize(feats[1][start : start + 1024], dim=1), data["k"])
    pred = {name: v.argmax(dim=1) for name, v in votes.items()}
    diff = (votes["fp32"] - votes["prefilter"]).abs()
    rel = diff / votes["fp32"].abs().clamp_min(1e-30)
    return {
        "run": data["run"],
        "feature_dim": feats[0].shape[1],
        "fp32_seconds": round(min(seconds["fp32"]), 2),
        "prefilter_seconds": round(min(seconds["prefilter"]), 2),
        "speedup": round(min(seconds["fp32"]) / min(seconds["prefilter"]), 2),
        "certified": round(search.certified / search.searched, 4),
        "same_predictions": bool(torch.equal(pred["fp32"], pred["prefilter"])),
        "max_vote_rel_diff": float(rel.max().item()),
        # a neighbour swapped for another at the same fp32 score (to rounding) changes a vote
        "queries_votes_differ_1e-4": int((rel > 1e-4).any(dim=1).sum()),
        "knn_top1": round(100.0 * (pred["prefilter"] == test_labels).float().mean().item(), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories with last.pt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--save-features", type=Path, help="save the (one) run's features here")
    p.add_argument("--features", type=Path, help="features saved by --save-features")
    p.add_argument("--mode", choices=["fp32", "prefilter"], help="with --features: one search")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.features is not None:
        if args.mode is None:
            p.error("--features needs --mode")
        data = torch.load(args.features, weights_only=True)
        t0 = time.perf_counter()
        acc = knn_accuracy(
            data["train"],
            data["train_labels"],
            data["test"],
            data["test_labels"],
            k=data["k"],
            t=data["t"],
            num_classes=data["num_classes"],
            prefilter=args.mode == "prefilter",
        )
        print(json.dumps({"mode": args.mode, "knn_top1": acc, "seconds": time.perf_counter() - t0}))
        return 0
    if args.save_features is not None:
        if len(args.runs) != 1:
            p.error("--save-features takes one run directory")
        torch.save(run_features(args.runs[0], args.threads), args.save_features)
        return 0
    if not args.runs:
        p.error("give run directories, or --features FILE --mode MODE")
    for run_dir in args.runs:
        print(json.dumps(measure(run_features(run_dir, args.threads), args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
