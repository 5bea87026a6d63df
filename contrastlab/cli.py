"""Command line: ``contrastlab train | eval | demo | sweep | report``. Parses arguments into a
config and calls the engine or the analysis; no logic of its own."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import textwrap
import typing
from collections.abc import Mapping, Sequence

# torch-free, so that the OpenMP settings below still come before torch loads
from contrastlab.config import Config, ConfigError, apply_overrides, config_to_dict, load_config


def openmp_wait_env(environ: Mapping[str, str]) -> dict[str, str]:
    """How OpenMP threads wait between parallel regions, unless the user chose already.

    Returns the variables to add to ``environ``: none if it sets ``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``, else ``OMP_WAIT_POLICY=PASSIVE`` with ``GOMP_SPINCOUNT=2000``. Measured on
    2 cores with torch's GNU libgomp (SimCLR steps, batch 256; ``benchmarks/training/README.md``,
    seventeenth round): libgomp's default spin (300,000 iterations) slowed two 2-thread jobs
    sharing the cores to ~470 images/s each (an earlier run on a shared core: 8×, 868 → 110),
    while fully passive threads (spin 0) pay a wake-up at every parallel region on a quiet
    machine. A spin of 2,000 iterations (tens of µs) bridges the gaps between regions and then
    sleeps: 1.18× passive's step rate on a quiet host (median of six alternations), 3–12% below
    it when two jobs share the cores. libgomp lets ``GOMP_SPINCOUNT`` override the policy; other
    OpenMP runtimes ignore it and wait passively.
    """
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "2000"}


# Must be set before torch starts its OpenMP runtime, so before the engine is imported.
os.environ.update(openmp_wait_env(os.environ))


__all__ = ["build_parser", "config_from_args", "main", "openmp_wait_env"]

# The main job's training budget. The whole `make demo` must fit in 5 minutes on a 2-core
# machine, installs included: on a 2-core Zen-3 EPYC without native bf16 the installs took
# ~80 s and everything besides training (data, the per-epoch diagnostics, two evaluations of
# ~30 s each) ~90 s, so 2 minutes of training came to 292-302 s and 1.5 minutes to 263 s
# (width 32). With the 48-96-192-1024 CNN of the thirtieth round a Zen-4 with bf16 took 202 s.
DEMO_MINUTES = 1.5


def _add_train_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    d = Config()
    p.add_argument(
        "--config", help="YAML config file (sections data, model, loss, method, optim, train, eval)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="dotted override, repeatable, e.g. --set loss.temperature=0.2 (every key, with "
        "its type, default and meaning: contrastlab config --keys)",
    )
    p.add_argument(
        "--method",
        choices=["simclr", "moco", "supcon", "byol"],
        help=f"method (default {d.method.name})",
    )
    p.add_argument("--dataset", help=f"dataset name (default {d.data.dataset})")
    p.add_argument(
        "--data-dir",
        help="folder holding the dataset's official files (default: cache, Debian package)",
    )
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument(
        "--epochs",
        type=int,
        help="epochs, the schedule's length (default 20; with --max-time, as many as fit)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="MINUTES",
        help="wall-clock training budget; stops after the step that crosses it (default "
        + (f"{DEMO_MINUTES} without --config)" if demo else "none)"),
    )
    p.add_argument("--batch-size", type=int, help=f"images per step (default {d.data.batch_size})")
    p.add_argument(
        "--temperature",
        type=float,
        help="τ of a fixed policy, initial τ of a learnable one "
        "(default per method: simclr 0.2, supcon 0.1, moco 0.1)",
    )
    p.add_argument(
        "--policy",
        choices=["fixed", "cosine", "learnable", "dystress"],
        help=f"temperature policy (default {d.loss.policy})",
    )
    p.add_argument(
        "--loss",
        help="loss name (simclr: nt_xent, hard_nt_xent, simple, hard_simple, align_uniform)",
    )
    p.add_argument(
        "--backbone", help=f"small_cnn, resnet18, resnet34, resnet50 (default {d.model.backbone})"
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {d.train.seed})")
    p.add_argument("--out", help="run directory (default runs/METHOD-DATASET-TIME)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


_ARG_KEYS = {
    "method": "method.name",
    "dataset": "data.dataset",
    "data_dir": "data.data_dir",
    "epochs": "train.epochs",
    "max_time": "train.max_time",
    "batch_size": "data.batch_size",
    "temperature": "loss.temperature",
    "policy": "loss.policy",
    "loss": "loss.name",
    "backbone": "model.backbone",
    "seed": "train.seed",
    "out": "train.out",
}


def keys_text(width: int = 100) -> str:
    """Every config key as ``section.key  type  default``, under its section's description (the
    section dataclass's docstring, which explains the keys): ``contrastlab config --keys``."""
    lines: list[str] = []
    defaults = Config()
    for section in dataclasses.fields(Config):
        obj = getattr(defaults, section.name)
        doc = " ".join((inspect.getdoc(type(obj)) or "").replace("``", "").split())
        lines += ["", f"[{section.name}]", *textwrap.wrap(doc, width)]
        hints = typing.get_type_hints(type(obj))
        rows = [
            (f"{section.name}.{f.name}", _type_text(hints[f.name]), repr(getattr(obj, f.name)))
            for f in dataclasses.fields(obj)
        ]
        key_w = max(len(r[0]) for r in rows)
        type_w = max(len(r[1]) for r in rows)
        lines += [f"  {k:<{key_w}}  {t:<{type_w}}  default {v}" for k, t, v in rows]
    return "\n".join(lines[1:])


def _type_text(tp: object) -> str:
    args = typing.get_args(tp)
    if args:
        return " | ".join(
            "None" if a is type(None) else getattr(a, "__name__", str(a)) for a in args
        )
    return getattr(tp, "__name__", str(tp))


def config_from_args(args: argparse.Namespace, defaults: Sequence[str] = ()) -> Config:
    """The config file (if any; else the defaults, then ``defaults``), then the explicit
    options, then ``--set`` overrides."""
    cfg = load_config(args.config) if args.config else apply_overrides(Config(), list(defaults))
    overrides = [
        f"{key}={getattr(args, name)}"
        for name, key in _ARG_KEYS.items()
        if getattr(args, name) is not None
    ]
    if args.download:
        overrides.append("data.download=true")
    if args.quiet:
        overrides.append("train.quiet=true")
    return apply_overrides(cfg, overrides + list(args.set))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrastlab",
        description="Contrastive representation learning with the temperature as a first-class object.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train an encoder, then evaluate it (kNN, linear probe)")
    _add_train_options(p_train)
    p_demo = sub.add_parser(
        "demo", help=f"the main job: SimCLR on Fashion-MNIST in ~{DEMO_MINUTES} minutes"
    )
    _add_train_options(p_demo, demo=True)
    p_eval = sub.add_parser(
        "eval",
        help="re-evaluate a saved run directory",
        description="Re-evaluate a run directory written by `contrastlab train`: kNN and linear "
        "probe on the frozen backbone (next to the untrained encoder), alignment, uniformity, "
        "tolerance; rewrites RUN_DIR/summary.json and prints the report.",
    )
    p_eval.add_argument("run_dir", help="the run directory (holds config.json and last.pt)")
    p_eval.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="evaluation override, repeatable: eval.* (e.g. eval.linear_epochs=100), "
        "data.data_dir, train.device, train.threads (default: the run's own config)",
    )
    p_show = sub.add_parser(
        "config",
        help="print the resolved config as YAML, or every key with its default (--keys)",
    )
    _add_train_options(p_show)
    p_show.add_argument(
        "--keys",
        action="store_true",
        help="list every config key (section.key) with its type, default and meaning, and exit "
        "(the other options are ignored)",
    )
    try:
        from contrastlab.analysis.cli import add_analysis_commands
    except ImportError:  # pragma: no cover - analysis is part of the package
        pass
    else:
        add_analysis_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "config" and args.keys:
            print(keys_text())
            return 0
        if args.command in ("train", "demo", "config"):
            # the demo's budget yields to --max-time, --set and a --config file
            demo = [f"train.max_time={DEMO_MINUTES}"] if args.command == "demo" else []
            cfg = config_from_args(args, demo)
            if args.command == "config":
                import yaml

                from contrastlab.engine.views import with_named_views
                from contrastlab.methods import with_method_defaults

                shown = with_named_views(with_method_defaults(cfg))
                print(yaml.safe_dump(config_to_dict(shown), sort_keys=False))
                return 0
            from contrastlab.engine.run import format_report, run

            summary = run(cfg, resume=args.resume)
            print(format_report(summary))
            return 0
        if args.command == "eval":
            from contrastlab.engine.run import evaluate_saved_run, format_report

            print(format_report(evaluate_saved_run(args.run_dir, args.set)))
            return 0
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
    except ConfigError as exc:
        print(f"contrastlab: config error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # FileNotFoundError, a folder given as a file, ...
        print(f"contrastlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {
            "train": "; the last checkpoint was saved (resume with --resume)",
            "demo": "; the last checkpoint was saved (resume with --resume)",
            "sweep": "; run the same command again: finished cells are kept, the interrupted "
            "one resumes from its checkpoint",
        }.get(args.command, "")
        print(f"\ncontrastlab: interrupted{hint}", file=sys.stderr)
        return 130
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
