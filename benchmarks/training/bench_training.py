"""Issue-5 benchmark: accuracy of each method on Fashion-MNIST under a wall-clock budget, and the
throughput of a full training step.

Runs `contrastlab train` (one subprocess per run, 2 threads) for each method and seed, reads each
run's summary.json and writes a Markdown table to stdout and benchmarks/training/results.json.

    python benchmarks/training/bench_training.py --minutes 10 --seeds 0 1 2 --methods simclr supcon
    python benchmarks/training/bench_training.py --minutes 10 --seeds 0 --methods moco byol
    python benchmarks/training/bench_training.py --throughput      # step images/s, eval seconds

An AVX2 host without native bf16 can be approximated on a newer one by limiting the kernels:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
        python benchmarks/training/bench_training.py --throughput --set train.amp=false
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
KEYS = (
    "linear_top1",
    "knn_top1",
    "untrained_linear_top1",
    "untrained_knn_top1",
    "alignment",
    "uniformity",
    "tolerance",
    "final_temperature",
    "images_per_second",
    "epochs_done",
    "eval_seconds",
    "features_seconds",
    "knn_seconds",
    "probe_seconds",
)


_HOST_PROBE = """
import time, torch
torch.set_num_threads(2)
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
for _ in range(3): a @ b
best = float("inf")
for _ in range(5):
    t0 = time.perf_counter(); [a @ b for _ in range(4)]; best = min(best, time.perf_counter() - t0)
print(4 * 2 * 2048**3 / best / 1e9)
"""


def host_gflops(env: dict[str, str]) -> float:
    """The host's fp32 matrix-product rate (GFLOP/s, 2 threads, best of 5) just before a run.

    The machine is shared and its speed drifts by up to 2× between hours, so a wall-clock
    budget buys a different number of epochs on different days; this figure, stored beside each
    result, says how fast the host was."""
    out = subprocess.run(
        [sys.executable, "-c", _HOST_PROBE], check=True, env=env, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def run_one(
    method: str, seed: int, minutes: float, out: Path, extra: list[str]
) -> dict[str, object]:
    from contrastlab.cli import openmp_wait_env

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env.update(openmp_wait_env(env))  # as the CLI sets them: the host probe waits like the run
    gflops = host_gflops(env)
    cmd = [
        sys.executable,
        "-m",
        "contrastlab",
        "train",
        "--method",
        method,
        "--seed",
        str(seed),
        "--max-time",
        str(minutes),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "train.threads=2",
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["host_gflops"] = gflops
    summary["cpu"] = cpu_model()
    return summary


def cpu_model() -> str:
    """The CPU's model name and whether it has native bf16 (AVX512-BF16 or AMX): the shared
    host is not always the same machine, and bf16 autocast is on by default where it is native."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    return f"{name} ({'native bf16' if native else 'no native bf16'})"


def accuracy(args: argparse.Namespace) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for method in args.methods:
        for seed in args.seeds:
            key = f"{method}/seed{seed}/{args.minutes}min" + (f"/{args.tag}" if args.tag else "")
            if key in results and not args.force:
                continue
            out = Path(args.runs) / (
                f"{method}-s{seed}-{args.minutes}m" + (f"-{args.tag}" if args.tag else "")
            )
            extra = [x for s in args.set for x in ("--set", s)]
            results[key] = {
                k: v for k, v in run_one(method, seed, args.minutes, out, extra).items()
            }
            RESULTS.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict[str, dict[str, object]]) -> None:
    by_method: dict[str, list[dict[str, object]]] = {}
    for key, summary in results.items():
        parts = key.split("/")  # method/seedS/budget[/tag]
        by_method.setdefault(" ".join([parts[0], *parts[2:]]), []).append(summary)
    print(
        "| method (budget) | seeds | linear top-1 | kNN top-1 | untrained lin / kNN | uniformity | tolerance | τ end | img/s | epochs | host GFLOP/s | bf16 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in sorted(by_method.items()):

        def col(k: str, fmt: str = ".2f", runs: list[dict[str, object]] = runs) -> str:
            vals = [float(r[k]) for r in runs if r.get(k) is not None]  # type: ignore[arg-type]
            if not vals:
                return "n/a"
            mean = statistics.fmean(vals)
            return f"{mean:{fmt}}" + (f" ± {statistics.stdev(vals):{fmt}}" if len(vals) > 1 else "")

        print(
            f"| {name} | {len(runs)} | {col('linear_top1')} | {col('knn_top1')} | "
            f"{col('untrained_linear_top1', '.1f')} / {col('untrained_knn_top1', '.1f')} | "
            f"{col('uniformity', '.2f')} | {col('tolerance', '.3f')} | {col('final_temperature', '.3f')} | "
            f"{col('images_per_second', '.0f')} | {col('epochs_done', '.1f')} | "
            f"{col('host_gflops', '.0f')} | {_bf16(runs)} |"
        )


def _bf16(runs: list[dict[str, object]]) -> str:
    """Whether the runs trained under bf16 autocast ("?" for runs from before it was recorded)."""
    seen = {r.get("bf16_autocast") for r in runs}
    return "/".join(sorted({True: "yes", False: "no", None: "?"}[v] for v in seen))  # type: ignore[index]


def _timed_steps(method, opt, aug, ds, cfg, gen, n_steps: int, batch: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds spent in each part of ``n_steps`` full training steps."""
    import torch

    from contrastlab.engine.trainer import autocast_for

    device = torch.device("cpu")
    parts = {"augment": 0.0, "forward": 0.0, "backward": 0.0, "update": 0.0}
    for i in range(n_steps):
        idx = torch.randint(0, len(ds), (batch,), generator=gen)
        t0 = time.perf_counter()
        views = aug(ds.images[idx], generator=gen)
        t1 = time.perf_counter()
        with autocast_for(device, cfg.train.amp):
            out = method.training_step(views, ds.labels[idx], step=i, progress=0.0)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        t3 = time.perf_counter()
        opt.step()
        method.after_optimizer_step(step=i, progress=0.0)
        t4 = time.perf_counter()
        for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[k] += dt
    return parts


def build_arm(ds, sets: list[str]):  # type: ignore[no-untyped-def]
    """(cfg, method, optimizer, augment, generator) of a SimCLR model for timed steps: the
    library's config with ``sets`` applied, channels-last, seeded, with the run's own views."""
    import torch

    from contrastlab.config import Config, apply_overrides
    from contrastlab.engine.trainer import _build_optimizer, augment_of
    from contrastlab.methods import build_method

    cfg = apply_overrides(Config(), sets)
    torch.manual_seed(0)
    method = build_method(cfg, 1).to(memory_format=torch.channels_last)
    aug = augment_of(cfg, ds, method)  # the run's own views (preset, view_size, ...)
    return cfg, method, _build_optimizer(cfg, method), aug, torch.Generator().manual_seed(0)


def throughput(args: argparse.Namespace) -> None:
    """Images/s of full SimCLR steps (augment + forward + backward + update) at batch 256.

    With ``--ab KEY=VALUE``, a second model built with those overrides runs in alternating blocks
    of 5 steps beside the first, so both see the same machine load, and the ratio is printed.
    """
    import torch

    from contrastlab.data import load_dataset
    from contrastlab.engine.evaluate import evaluate_backbone

    torch.set_num_threads(args.threads)
    ds = load_dataset("fashion-mnist")
    test = load_dataset("fashion-mnist", "test")
    arms = {"default": list(args.set)}
    if args.ab:
        arms[" ".join(args.ab)] = [*args.set, *args.ab]
    built = {
        name: build_arm(ds, [f"data.batch_size={args.batch}", *sets]) for name, sets in arms.items()
    }
    from contrastlab.eval.features import bf16_enabled

    # Which kernels run: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (with
    # --set train.amp=false) stand in for an AVX2 host without native bf16.
    print(
        f"torch {torch.__version__}, ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
        f"oneDNN ISA limit {os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}, {args.threads} threads"
    )
    for name, (cfg, *_) in built.items():
        print(f"[{name}] bf16 autocast: {'on' if bf16_enabled('cpu', cfg.train.amp) else 'off'}")
    block = 5
    totals = {
        name: dict.fromkeys(("augment", "forward", "backward", "update"), 0.0) for name in built
    }
    for cfg, method, opt, aug, gen in built.values():  # warm-up
        _timed_steps(method, opt, aug, ds, cfg, gen, 3, args.batch)
    blocks = max(1, -(-args.steps // block))  # --steps rounded up to whole blocks
    for _ in range(blocks):
        for name, (cfg, method, opt, aug, gen) in built.items():
            for k, v in _timed_steps(method, opt, aug, ds, cfg, gen, block, args.batch).items():
                totals[name][k] += v
    n_steps = block * blocks
    rates = {}
    for name, parts in totals.items():
        t_all = sum(parts.values())
        rates[name] = n_steps * args.batch / t_all
        print(
            f"[{name}] full SimCLR step, batch {args.batch}: {rates[name]:.0f} source images/s "
            f"({2 * rates[name]:.0f} views/s) over {n_steps} steps"
        )
        for k, v in parts.items():
            print(f"  {k:9s} {1000 * v / n_steps:7.1f} ms/step  ({100 * v / t_all:4.1f}%)")
    if args.ab:
        name = " ".join(args.ab)
        print(
            f"ratio [{name}] / [default]: {rates[name] / rates['default']:.2f}x images/s (paired)"
        )
    for name, (cfg, method, _, _, _) in built.items():
        t0 = time.perf_counter()
        res = evaluate_backbone(method.backbone, ds, test, cfg, torch.device("cpu"))
        print(
            f"[{name}] evaluation (features of 70k images + kNN + linear probe): "
            f"{time.perf_counter() - t0:.1f} s (kNN {res['knn_top1']:.1f}%, linear "
            f"{res['linear_top1']:.1f}% for this barely trained encoder)"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=["simclr", "supcon", "moco", "byol"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--runs", default="runs/bench-training")
    p.add_argument(
        "--set", action="append", default=[], help="extra config overrides for every run"
    )
    p.add_argument("--force", action="store_true", help="re-run cells already in results.json")
    p.add_argument(
        "--tag",
        default="",
        help="name of this configuration (e.g. the --set overrides): keys results.json and the "
        "run directories, so runs of different configurations are kept apart",
    )
    p.add_argument("--throughput", action="store_true")
    p.add_argument(
        "--ab",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="with --throughput: also time a model with these overrides, paired with the default",
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="only print the table of results.json")
    args = p.parse_args()
    if args.ab and not args.throughput:
        p.error("--ab compares step throughput: use it with --throughput")
    if args.table:
        print_table(json.loads(RESULTS.read_text()))
    elif args.throughput:
        throughput(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
