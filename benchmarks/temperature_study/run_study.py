"""The temperature study on Fashion-MNIST (issue 6): Wang & Liu's grid within a CPU budget.

Two sweeps into one directory (resumable; rerun the same command to continue):

1. losses nt_xent, hard_nt_xent (α = 0.0819), simple, hard_simple (α = 0.0819) × fixed
   τ ∈ {0.07, 0.3, 0.7, 1.0} (Wang & Liu's CIFAR-10 temperatures, so the table compares cell by
   cell; the simple losses have no τ and run once): 10 cells;
2. nt_xent with DySTreSS (τ_min 0.07, τ_max 0.2) and with a learnable τ (initial 0.2): 2 cells.

Every cell: SimCLR, small CNN, batch 128 (as Wang & Liu), ten epochs over a seeded 10,240-image
subset of the Fashion-MNIST train split (800 steps: a fixed step budget, so cells stay comparable
on a machine shared with other jobs), then the weighted kNN (k 200) and a 10-epoch linear probe
on the frozen encoder (trained on the same subset), and the metrics on the test split (10,000
images). Results (tables, figures, report.html, environment.json) are copied into
``benchmarks/temperature_study/results``.

    .venv/bin/python benchmarks/temperature_study/run_study.py
"""

from __future__ import annotations

import os

# before torch loads: with active OpenMP spin-waits, two jobs sharing the 2 cores ran ~8x slower
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from contrastlab.cli import main

HERE = Path(__file__).resolve().parent
TAUS = ["0.07", "0.3", "0.7", "1.0"]
INTERRUPTED = 130  # the CLI's exit code after Ctrl-C


def _common(args: argparse.Namespace) -> list[str]:
    sets = [
        "eval.untrained_baseline=false",
        f"eval.linear_epochs={args.linear_epochs}",
        f"train.seed={args.seed}",
        f"train.threads={args.threads}",
        f"data.train_subset={args.train_subset}",
        f"data.batch_size={args.batch_size}",
    ]
    opts = ["--dataset", "fashion-mnist", "--out", str(args.out), "--epochs", str(args.epochs)]
    if args.minutes is not None:
        opts += ["--max-time", str(args.minutes)]
    for s in sets + list(args.set):
        opts += ["--set", s]
    return opts


def main_study() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs per cell (default 10)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="optional wall-clock cap per cell (default none: a fixed step budget keeps the cells "
        "comparable on a shared machine)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="batch (default 128, as Wang & Liu)")
    p.add_argument("--linear-epochs", type=int, default=10, help="linear-probe epochs (default 10)")
    p.add_argument(
        "--train-subset",
        type=int,
        default=10240,
        help="training images (seeded subset; also the kNN/probe train set; default 10240)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/temperature-study-10ep"))
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--set", action="append", default=[], help="extra override for every cell")
    args = p.parse_args()

    start, load_start = time.time(), os.getloadavg()
    grid1 = ["sweep", "--losses", "nt_xent", "hard_nt_xent", "simple", "hard_simple"]
    grid1 += ["--policies", "fixed"]
    grid1 += ["--taus", *TAUS]
    grid2 = ["sweep", "--losses", "nt_xent", "--policies", "dystress", "learnable", "--taus", "0.2"]
    codes = [main(grid1 + _common(args))]
    if codes[0] == INTERRUPTED:  # Ctrl-C: stop here; rerunning the command resumes
        return INTERRUPTED
    codes.append(main(grid2 + _common(args)))

    args.results.mkdir(parents=True, exist_ok=True)
    for name in (
        "table.md",
        "table.csv",
        "table.json",
        "table_flat.csv",
        "comparison.md",
        "report.html",
    ):
        shutil.copy2(args.out / name, args.results / name)
    figures = args.results / "figures"
    figures.mkdir(exist_ok=True)
    for png in (args.out / "figures").glob("*.png"):
        shutil.copy2(png, figures / png.name)
    env = {
        "command": "benchmarks/temperature_study/run_study.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if v is not None
            if k
            in (
                "epochs",
                "minutes",
                "batch_size",
                "linear_epochs",
                "train_subset",
                "threads",
                "seed",
            )
        ),
        "wall_minutes": round((time.time() - start) / 60, 1),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "exit_codes": codes,
    }
    (args.results / "environment.json").write_text(json.dumps(env, indent=2))
    print(json.dumps(env, indent=2))
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main_study())
