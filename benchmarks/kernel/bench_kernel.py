"""Forward+backward time and peak memory of the contrastive kernel against its floor and peers.

Every (case, implementation) runs in its own subprocess with 2 threads, ``OMP_WAIT_POLICY=PASSIVE``
(on a shared machine spinning OpenMP threads make many-kernel code look far slower than it is;
the setting applies to every implementation alike) and an address-space cap (``--mem-cap-gb``),
so a peer that asks for 34 GB is recorded as OOM instead of taking the machine down. Time is the
median over ``--reps`` timed runs after one warm-up; "× floor" is the median of per-run ratios to
the floor, timed in the same process, alternating floor and implementation, so that both see the
same load; memory is the peak resident set size during the warm-up run minus the resident size
after the inputs were built (the peak is reset through /proc/self/clear_refs).

Implementations: ``floor`` (the matrix products alone: ``S = Z·Zᵀ`` and the products of its
backward for the inputs that need a gradient), ``auto`` / ``tiled`` / ``dense`` (contrastlab's
three backends), ``lightly`` (NTXentLoss) and ``pml`` (pytorch-metric-learning NTXentLoss,
SupConLoss). Run from the repository root::

    .venv/bin/python benchmarks/kernel/bench_kernel.py            # the table of the README
    .venv/bin/python benchmarks/kernel/bench_kernel.py --big      # + N = 65,536 per view
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

D = 128
TAU = 0.1

# (case id, loss, N, extra) — N per view for NT-Xent / SupCon, queries for MoCo.
CASES: list[tuple[str, str, int, dict[str, Any]]] = [
    ("ntxent-1024", "ntxent", 1024, {}),
    ("ntxent-4096", "ntxent", 4096, {}),
    ("ntxent-16384", "ntxent", 16384, {}),
    ("supcon10-1024", "supcon", 1024, {"classes": 10}),
    ("supcon100-1024", "supcon", 1024, {"classes": 100}),
    ("supcon10-4096", "supcon", 4096, {"classes": 10}),
    ("supcon100-4096", "supcon", 4096, {"classes": 100}),
    ("moco-256-K65536", "moco", 256, {"k": 65536}),
    ("moco-1024-K65536", "moco", 1024, {"k": 65536}),
    ("dystress-4096", "dystress", 4096, {}),
]
BIG = ("ntxent-65536", "ntxent", 65536, {})
IMPLS = {
    "ntxent": ["floor", "auto", "tiled", "dense", "lightly", "pml"],
    "supcon": ["floor", "auto", "tiled", "dense", "pml"],
    "moco": ["floor", "auto", "tiled", "dense"],
    "dystress": ["floor", "auto", "tiled", "dense"],
}


def load_lightly_ntxent() -> Any:
    """lightly's NTXentLoss without torchvision.

    ``lightly.loss``'s package ``__init__`` and ``lightly.models.utils`` import torchvision; the
    loss module itself does not need it. Empty package stubs let Python import just
    ``lightly/loss/ntx_ent_loss.py`` and its memory-bank module (unused with the default
    ``memory_bank_size=0``) without running those ``__init__`` files.
    """
    spec = importlib.util.find_spec("lightly")
    if spec is None or spec.origin is None:
        raise ImportError("lightly is not installed (pip install --no-deps lightly)")
    root = Path(spec.origin).parent
    for name in ("lightly.loss", "lightly.models", "lightly.models.modules"):
        stub = types.ModuleType(name)
        stub.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = stub
    sys.modules["lightly.models.utils"] = types.ModuleType("lightly.models.utils")
    from lightly.loss.ntx_ent_loss import NTXentLoss

    return NTXentLoss


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _build(loss: str, n: int, extra: dict[str, Any], impl: str) -> Callable[[], None]:
    """Inputs for one case and a closure running forward+backward once."""
    import torch

    from contrastlab.losses import moco_info_nce, nt_xent, supcon
    from contrastlab.temperature import DySTreSS

    g = torch.Generator().manual_seed(0)
    if loss == "moco":
        q = torch.randn(n, D, generator=g)
        key = torch.randn(n, D, generator=g)
        queue = torch.randn(extra["k"], D, generator=g)
        if impl == "floor":
            grad_s = torch.randn(n, extra["k"], generator=g)

            def floor_moco() -> None:
                qq = q.clone().requires_grad_(True)
                (qq @ queue.T).backward(grad_s)

            return floor_moco

        def run_moco() -> None:
            qq = q.clone().requires_grad_(True)
            moco_info_nce(qq, key, queue, TAU, backend=impl).backward()

        return run_moco
    z1 = torch.randn(n, D, generator=g)
    z2 = torch.randn(n, D, generator=g)
    labels = torch.randint(0, extra.get("classes", 1), (n,), generator=g)
    if impl == "floor":
        grad_s = torch.randn(2 * n, 2 * n, generator=g)

        def floor() -> None:
            z = torch.cat([z1, z2]).requires_grad_(True)
            (z @ z.T).backward(grad_s)

        return floor
    if impl == "lightly":
        lightly_loss = load_lightly_ntxent()(temperature=TAU)

        def run_lightly() -> None:
            a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
            lightly_loss(a, b).backward()

        return run_lightly
    if impl == "pml":
        from pytorch_metric_learning import losses as pml_losses

        if loss == "ntxent":
            pml_loss = pml_losses.NTXentLoss(temperature=TAU)
            pml_labels = torch.arange(n).repeat(2)
        else:
            pml_loss = pml_losses.SupConLoss(temperature=TAU)
            pml_labels = labels.repeat(2)

        def run_pml() -> None:
            a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
            pml_loss(torch.cat([a, b]), pml_labels).backward()

        return run_pml
    temperature: Any = DySTreSS(0.07, 0.2) if loss == "dystress" else TAU

    def run_ours() -> None:
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        if loss == "supcon":
            out = supcon(torch.stack([a, b], 1), labels, temperature=temperature, backend=impl)
        else:
            out = nt_xent(a, b, temperature, backend=impl)
        out.backward()

    return run_ours


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one (case, impl) in this process; returns the measurement."""
    cap = int(job["mem_cap_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    torch.set_num_threads(2)
    fn = _build(job["loss"], job["n"], job["extra"], job["impl"])
    base = _rss_mb("VmRSS")
    _reset_peak()
    times: list[float] = []
    floor_times: list[float] = []
    try:
        start = time.perf_counter()
        fn()  # warm-up, and the memory measurement (before the floor's inputs exist)
        warm = time.perf_counter() - start
        peak = max(_rss_mb("VmHWM"), _rss_mb("VmRSS"))
        floor = _build(job["loss"], job["n"], job["extra"], "floor") if job["with_floor"] else None
        if floor is not None:
            floor()
        reps = job["reps"] if warm * job["reps"] < job["time_budget"] else max(1, job["min_reps"])
        # Interleave with the floor so both see the same load of a shared machine.
        for _ in range(reps):
            if floor is not None:
                t0 = time.perf_counter()
                floor()
                floor_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    except (MemoryError, RuntimeError) as err:
        status = "OOM" if "memory" in str(err).lower() or isinstance(err, MemoryError) else "error"
        return {**job, "status": status, "error": str(err)[:200]}
    out = {**job, "status": "ok", "time": statistics.median(times), "times": times}
    out["mem_mb"] = peak - base
    if floor_times:
        out["floor_time"] = statistics.median(floor_times)
        out["x_floor"] = statistics.median(t / f for t, f in zip(times, floor_times, strict=True))
    return out


def run_job(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**job, "status": "timeout"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        err = res.stderr.strip().splitlines()[-1:] or ["killed"]
        oom = "memory" in err[0].lower() or res.returncode < 0
        return {**job, "status": "OOM" if oom else "error", "error": err[0][:200]}
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| case | impl | median s | × floor (paired) | × dense | peak RSS growth MB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_case.setdefault(r["case"], {})[r["impl"]] = r
    for case, impls in by_case.items():
        dense = impls.get("dense", {}).get("time")
        for impl, r in impls.items():
            if r["status"] != "ok":
                rows.append(f"| {case} | {impl} | {r['status']} | | | |")
                continue
            t = r["time"]
            xf = f"{r['x_floor']:.2f}" if "x_floor" in r else "1" if impl == "floor" else "–"
            xd = f"{t / dense:.2f}" if dense else "–"
            rows.append(f"| {case} | {impl} | {t:.3f} | {xf} | {xd} | {r['mem_mb']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cases", nargs="*", help="case ids to run (default: all)")
    ap.add_argument("--impls", nargs="*", help="implementations to run (default: all)")
    ap.add_argument("--big", action="store_true", help="also N = 65,536 per view (tiled only)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--time-budget", type=float, default=120.0, help="seconds of timed reps")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    ap.add_argument("--mem-cap-gb", type=float, default=16.0)
    ap.add_argument("--out", default="benchmarks/kernel/results.jsonl")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    cases = list(CASES)
    if args.big:
        cases.append(BIG)
    results = []
    with open(args.out, "w") as fh:
        for case, loss, n, extra in cases:
            if args.cases and case not in args.cases:
                continue
            impls = ["tiled", "auto"] if case == BIG[0] else IMPLS[loss]
            for impl in impls:
                if args.impls and impl not in args.impls:
                    continue
                job = {
                    "case": case,
                    "loss": loss,
                    "n": n,
                    "extra": extra,
                    "impl": impl,
                    "reps": 1 if case == BIG[0] else args.reps,
                    "min_reps": 1 if case == BIG[0] else 3,
                    "time_budget": args.time_budget,
                    "mem_cap_gb": args.mem_cap_gb,
                    "with_floor": impl != "floor" and case != BIG[0],
                }
                r = run_job(job, args.timeout)
                results.append(r)
                fh.write(json.dumps(r) + "\n")
                fh.flush()
                shown = f"{r['time']:.3f}s {r['mem_mb']:.0f}MB" if r["status"] == "ok" else ""
                print(f"{case:18s} {impl:8s} {r['status']:7s} {shown}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
