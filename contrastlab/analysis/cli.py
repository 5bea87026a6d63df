"""The ``sweep`` and ``report`` subcommands, registered by :mod:`contrastlab.cli`.

Each parser sets ``handler=<callable(args) -> exit code>``; ``contrastlab.cli.main`` calls it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["add_analysis_commands", "report_command", "sweep_command"]

DEFAULT_TAUS = (0.07, 0.2, 0.5, 1.0)
DEFAULT_LOSSES = ("nt_xent", "hard_nt_xent", "simple")


def sweep_command(args: argparse.Namespace) -> int:
    """Run the grid, then write the tables, the figures and ``report.html`` into ``--out``."""
    from contrastlab.analysis.report import write_report
    from contrastlab.analysis.sweep import SweepOptions, build_grid, run_sweep
    from contrastlab.analysis.tables import to_markdown, write_tables

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"runs/sweep-{args.dataset or 'fashion-mnist'}-{stamp}")
    cells = build_grid(args.losses, args.policies, args.taus)
    opts = SweepOptions(
        out=out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        epochs=args.epochs,
        max_time=args.max_time,
        hard_alpha=args.hard_alpha,
        hard_top_k=args.hard_top_k,
        overrides=list(args.set),
        config=args.config,
    )
    print(f"sweep: {len(cells)} cells into {out}: " + ", ".join(c.name for c in cells))
    result = run_sweep(cells, opts)
    write_tables(result.rows, out)
    report = write_report(out)
    print(to_markdown(result.rows))
    print(
        f"tables: {out}/table.md, table.csv, table.json; figures: {out}/figures; report: {report}"
    )
    if result.failed:
        print(
            f"{len(result.failed)} cell(s) failed: "
            + "; ".join(f"{k}: {v}" for k, v in result.failed.items())
        )
        return 1
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Write the HTML report of a run or sweep directory."""
    from contrastlab.analysis.report import is_sweep_dir, write_report
    from contrastlab.analysis.sweep import collect_rows
    from contrastlab.analysis.tables import write_tables

    if is_sweep_dir(args.path):
        write_tables(collect_rows(args.path), args.path)
    path = write_report(args.path, out=args.out, title=args.title)
    print(f"report: {path.resolve().as_uri()}")
    return 0


def add_analysis_commands(subparsers: Any) -> None:
    """Register ``sweep`` and ``report`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "sweep",
        help="a grid of (loss × temperature policy × τ), with tables, figures and an HTML report",
        description="Run every cell of the grid sequentially (resumable: finished cells are skipped, "
        "interrupted ones continue from their checkpoint). fixed and learnable policies run at every τ "
        "(learnable: initial τ); dystress and cosine run once per loss with loss.tau_min/tau_max; "
        "losses without τ (simple, hard_simple, align_uniform) run once.",
    )
    p.add_argument(
        "--dataset", help="dataset name (default: the --config file's, else fashion-mnist)"
    )
    p.add_argument("--data-dir", help="folder with the dataset's official files")
    p.add_argument(
        "--taus",
        type=float,
        nargs="+",
        default=list(DEFAULT_TAUS),
        metavar="TAU",
        help="temperatures (default " + " ".join(f"{t:g}" for t in DEFAULT_TAUS) + ")",
    )
    p.add_argument(
        "--losses",
        nargs="+",
        default=list(DEFAULT_LOSSES),
        metavar="LOSS",
        help="nt_xent hard_nt_xent simple hard_simple align_uniform (default "
        + " ".join(DEFAULT_LOSSES)
        + ")",
    )
    p.add_argument(
        "--policies",
        nargs="+",
        default=["fixed"],
        metavar="POLICY",
        help="fixed learnable dystress cosine (default fixed)",
    )
    p.add_argument(
        "--epochs", type=int, help="epochs per cell, the schedule's length (default 20)"
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="MINUTES",
        help="training budget per cell (default none; with it and no --epochs, as many epochs "
        "as fit)",
    )
    p.add_argument("--out", help="sweep directory (default runs/sweep-DATASET-TIME)")
    p.add_argument(
        "--hard-alpha",
        type=float,
        default=0.0819,
        help="hard losses: keep the top α of negatives (default 0.0819, Wang & Liu CIFAR-10)",
    )
    p.add_argument(
        "--hard-top-k", type=int, help="hard losses: keep the top-k negatives instead of α"
    )
    p.add_argument(
        "--config",
        help="YAML base config for every cell (the sweep sets method.name=simclr, "
        "train.quiet=true and each cell's loss and τ over it)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override applied to every cell, repeatable",
    )
    p.set_defaults(handler=sweep_command)

    r = subparsers.add_parser(
        "report", help="a self-contained HTML page of a run or sweep directory"
    )
    r.add_argument("path", metavar="RUN_OR_SWEEP_DIR")
    r.add_argument("--out", help="output file (default RUN_OR_SWEEP_DIR/report.html)")
    r.add_argument("--title", help="page title")
    r.set_defaults(handler=report_command)
