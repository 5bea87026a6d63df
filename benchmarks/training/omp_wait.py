"""How OpenMP threads wait, measured on full SimCLR steps (benchmark README, seventeenth round).

Each setting runs in a fresh process (OpenMP reads its environment once, when torch loads):
3 warm-up steps, then ``--steps`` timed training steps (augmentation, forward, backward, update;
batch 256, the default SimCLR model at 20×20 views, 2 threads). The settings alternate
``--rounds`` times so that each sees the same machine load; ``--jobs 2`` runs two copies of each
at once, as when another job shares the cores.

    python benchmarks/training/omp_wait.py --rounds 6
    python benchmarks/training/omp_wait.py --rounds 2 --jobs 2 --steps 15
    python benchmarks/training/omp_wait.py --settings passive spin=1000 spin=300000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

VIEWS = [
    "data.batch_size=256",
    "data.view_size=20",
    "data.solarize_p=0.5",
    "data.solarize_spread=0.25",
    "data.solarize_curve=0.5",
]


def child(steps: int) -> None:
    """Time ``steps`` training steps in this process and print images/s."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_training import _timed_steps, build_arm

    from contrastlab.data import load_dataset

    torch.set_num_threads(2)
    ds = load_dataset("fashion-mnist")
    cfg, method, opt, aug, gen = build_arm(ds, VIEWS)
    _timed_steps(method, opt, aug, ds, cfg, gen, 3, 256)
    parts = _timed_steps(method, opt, aug, ds, cfg, gen, steps, 256)
    print(f"{steps * 256 / sum(parts.values()):.1f}")


def env_of(setting: str) -> dict[str, str]:
    """``passive`` → OMP_WAIT_POLICY=PASSIVE; ``spin=N`` → that plus GOMP_SPINCOUNT=N."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    if setting.startswith("spin="):
        env["GOMP_SPINCOUNT"] = str(int(setting.removeprefix("spin=")))
    elif setting != "passive":
        raise SystemExit(f"settings are 'passive' or 'spin=N', got {setting!r}")
    return env


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--settings", nargs="+", default=["passive", "spin=2000"])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--jobs", type=int, default=1, help="copies of each setting run at once")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.steps)
        return
    rates: dict[str, list[float]] = {s: [] for s in args.settings}
    cmd = [sys.executable, __file__, "--child", "--steps", str(args.steps)]
    for r in range(args.rounds):
        for setting in args.settings:
            procs = [
                subprocess.Popen(cmd, env=env_of(setting), stdout=subprocess.PIPE, text=True)
                for _ in range(args.jobs)
            ]
            got = [float(proc.communicate()[0].split()[-1]) for proc in procs]
            rates[setting].append(sum(got))
            each = ", ".join(f"{g:.0f}" for g in got)
            print(f"round {r + 1} {setting:12s} {sum(got):6.0f} img/s ({each})", flush=True)
    base = args.settings[0]
    for setting, vals in rates.items():
        ratios = [v / b for v, b in zip(vals, rates[base], strict=True)]
        print(
            f"{setting:12s} median {statistics.median(vals):6.0f} img/s (all jobs), "
            f"median ratio to {base}: {statistics.median(ratios):.2f}"
        )


if __name__ == "__main__":
    main()
