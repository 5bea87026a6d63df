"""Issue-5 measurement (twenty-seventh round): the kNN's certified bf16 prefilter on the
features of saved encoders.

For each run directory, the trained encoder's features of the 60,000 training and 10,000 test
images are extracted as ``contrastlab eval`` extracts them; then the weighted kNN (the run's k
and t) is timed with the plain fp32 product and with the prefilter, alternating ``--repeats``
times, and the two are compared: the predictions must be identical and the votes equal to fp32
rounding. Also reported: the share of queries the prefilter certified (the rest were searched
again in fp32). One JSON line per run goes to stdout.

    python benchmarks/training/knn_prefilter.py runs/bench-training/simclr-s0-10.0m-v27-f2048
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
from contrastlab.engine.evaluate import normalizer
from contrastlab.engine.setup import method_for, placed, prepare_run
from contrastlab.engine.trainer import CHECKPOINT
from contrastlab.eval import extract_features, knn_scores
from contrastlab.eval import knn as knn_mod


def measure(run_dir: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Timings (s, best of ``repeats``) and agreement of the two kNN searches on one run."""
    stored = json.loads((run_dir / "config.json").read_text())
    cfg = apply_overrides(config_from_run(stored), [f"train.threads={threads}"])
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, None), cfg, device)
    method.load_state_dict(load_checkpoint(run_dir / CHECKPOINT)["method"])
    norm = normalizer(train_set)
    feats = [
        extract_features(
            method.backbone,
            ds.images,
            normalize_fn=norm,
            device=device,
            amp=cfg.train.amp,
            channels_last=cfg.train.channels_last,
        )
        for ds in (train_set, test_set)
    ]
    args = (feats[0], train_set.labels, feats[1])
    kw = {"k": cfg.eval.knn_k, "t": cfg.eval.knn_t, "num_classes": len(train_set.classes)}
    seconds: dict[str, list[float]] = {"fp32": [], "prefilter": []}
    votes: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name, prefilter in (("fp32", False), ("prefilter", True)):
            t0 = time.perf_counter()
            votes[name] = knn_scores(*args, prefilter=prefilter, **kw)  # type: ignore[arg-type]
            seconds[name].append(time.perf_counter() - t0)
    search = knn_mod._searcher(F.normalize(feats[0], dim=1), cfg.eval.knn_k, 1024, True)
    assert isinstance(search, knn_mod._Bf16Bank)
    for start in range(0, feats[1].shape[0], 1024):
        search.top(F.normalize(feats[1][start : start + 1024], dim=1), cfg.eval.knn_k)
    pred = {name: v.argmax(dim=1) for name, v in votes.items()}
    diff = (votes["fp32"] - votes["prefilter"]).abs()
    rel = diff / votes["fp32"].abs().clamp_min(1e-30)
    labels = test_set.labels
    return {
        "run": run_dir.name,
        "feature_dim": feats[0].shape[1],
        "fp32_seconds": round(min(seconds["fp32"]), 2),
        "prefilter_seconds": round(min(seconds["prefilter"]), 2),
        "speedup": round(min(seconds["fp32"]) / min(seconds["prefilter"]), 2),
        "certified": round(search.certified / search.searched, 4),
        "same_predictions": bool(torch.equal(pred["fp32"], pred["prefilter"])),
        "max_vote_rel_diff": float(rel.max().item()),
        # a neighbour swapped for another at the same fp32 score (to rounding) changes a vote
        "queries_votes_differ_1e-4": int((rel > 1e-4).any(dim=1).sum()),
        "knn_top1": round(100.0 * (pred["prefilter"] == labels).float().mean().item(), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories with last.pt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for run_dir in args.runs:
        print(json.dumps(measure(run_dir, args.threads, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
