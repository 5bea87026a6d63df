"""The temperature sweep: a grid of (loss × temperature policy × τ) run cell by cell.

Grid semantics (one dataset, one budget per cell):

* a loss with a temperature (``nt_xent``, ``hard_nt_xent``) crosses every policy; the ``fixed``
  and ``learnable`` policies cross every τ (for ``learnable`` τ is the *initial* value), while
  ``dystress`` and ``cosine`` set τ themselves from ``loss.tau_min``/``loss.tau_max`` and run
  once per loss, whatever ``--taus`` says (their column in the table is "—");
* a loss without a temperature (``simple``, ``hard_simple``, ``align_uniform``) runs once, with
  policy ``"none"``.

Each cell is a normal run directory ``OUT/cells/NAME`` (``config.json``, ``metrics.jsonl``,
``summary.json``, ...) plus ``cell.json`` naming its grid point. The sweep is resumable: a cell
whose ``summary.json`` exists is skipped, a cell interrupted mid-way continues from its
checkpoint (``run(cfg, resume=True)``). Running a second sweep into the same ``OUT`` with another
grid adds its cells; the table covers every finished cell.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contrastlab.config import Config, apply_overrides, load_config
from contrastlab.engine.checkpoint import previous_path
from contrastlab.methods.simclr import PAIR_LOSSES

__all__ = [
    "CELL_FILE",
    "POLICIES",
    "ROW_FIELDS",
    "SWEEP_FILE",
    "Cell",
    "SweepOptions",
    "SweepResult",
    "build_grid",
    "cell_config",
    "collect_rows",
    "run_sweep",
]

#: Temperature policies of the grid; the first two take a τ from ``--taus``.
POLICIES = ("fixed", "learnable", "dystress", "cosine")
CELL_FILE = "cell.json"
SWEEP_FILE = "sweep.json"
#: Columns of ``table.json`` (taken from the cell and its ``summary.json``).
ROW_FIELDS = (
    "loss",
    "policy",
    "tau",
    "linear_top1",
    "knn_top1",
    "uniformity",
    "tolerance",
    "alignment",
    "effective_rank",
    "final_temperature",
    "epochs_done",
    "train_seconds",
    "images_per_second",
    "run_dir",
)


class Runner(Protocol):
    """What the sweep calls per cell: :func:`contrastlab.engine.run.run`'s signature."""

    def __call__(
        self, cfg: Config, *, resume: bool = False, run_dir: str | Path | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Cell:
    """One grid point. ``tau`` is None when the policy sets τ itself or the loss has none."""

    loss: str
    policy: str
    tau: float | None = None

    @property
    def name(self) -> str:
        """Directory name, e.g. ``nt_xent-fixed-tau0.2`` or ``simple-none``."""
        base = f"{self.loss}-{self.policy}"
        return base if self.tau is None else f"{base}-tau{self.tau:g}"

    def as_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "policy": self.policy, "tau": self.tau, "name": self.name}


def build_grid(losses: Sequence[str], policies: Sequence[str], taus: Sequence[float]) -> list[Cell]:
    """The cells of a sweep, in run order (see the module docstring for the semantics).

    Raises:
        ValueError: an unknown loss or policy, a τ ≤ 0, an empty grid, or two τ values that
            agree in their first 6 significant digits (the cells' directory names would clash).
    """
    for loss in losses:
        if loss not in PAIR_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; the sweep takes {', '.join(PAIR_LOSSES)}")
    for policy in policies:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    for tau in taus:
        if not tau > 0:
            raise ValueError(f"every τ must be > 0, got {tau}")
    cells: list[Cell] = []
    for loss in losses:
        if not PAIR_LOSSES[loss]:
            cells.append(Cell(loss, "none"))
            continue
        for policy in policies:
            if policy in ("fixed", "learnable"):
                cells.extend(Cell(loss, policy, float(t)) for t in taus)
            else:
                cells.append(Cell(loss, policy))
    unique = list(dict.fromkeys(cells))
    names: dict[str, Cell] = {}
    for cell in unique:
        if cell.name in names:
            raise ValueError(
                f"τ values {names[cell.name].tau!r} and {cell.tau!r} both name the cell "
                f"{cell.name}; give τ values that differ in their first 6 significant digits"
            )
        names[cell.name] = cell
    if not unique:
        raise ValueError("the sweep grid is empty: give at least one loss, policy and τ")
    return unique


@dataclass
class SweepOptions:
    """Everything a sweep needs besides the grid.

    Attributes:
        out: the sweep directory.
        epochs / max_time: per-cell budget (epochs, and/or a wall-clock limit in minutes).
        hard_alpha / hard_top_k: the hard losses' negative selection (top_k wins if given);
            α = 0.0819 is Wang & Liu's CIFAR-10 value.
        overrides: extra ``section.key=value`` settings applied to every cell.
        config: an optional YAML base config.
    """

    out: Path
    dataset: str | None = None
    data_dir: str | None = None
    epochs: int | None = None
    max_time: float | None = None
    hard_alpha: float = 0.0819
    hard_top_k: int | None = None
    overrides: list[str] = field(default_factory=list)
    config: str | None = None


@dataclass
class SweepResult:
    """Rows of the finished cells and what happened to each cell in this invocation."""

    rows: list[dict[str, Any]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def cell_config(cell: Cell, opts: SweepOptions) -> Config:
    """The config of one cell: base config, sweep options, user overrides, then the grid point.

    Raises:
        ConfigError: an invalid override.
    """
    cfg = load_config(opts.config) if opts.config else Config()
    # The grid is over SimCLR's pair losses, and cells log quietly; the dataset is the base
    # config's (Fashion-MNIST by default) unless the sweep names one.
    common = ["method.name=simclr", "train.quiet=true"]
    if opts.dataset is not None:
        common.append(f"data.dataset={opts.dataset}")
    if opts.data_dir is not None:
        common.append(f"data.data_dir={opts.data_dir}")
    if opts.epochs is not None:
        common.append(f"train.epochs={opts.epochs}")
    if opts.max_time is not None:
        common.append(f"train.max_time={opts.max_time}")
    point = [
        f"loss.name={cell.loss}",
        f"loss.policy={'fixed' if cell.policy == 'none' else cell.policy}",
    ]
    if cell.tau is not None:
        point.append(f"loss.temperature={cell.tau}")
    if cell.loss.startswith("hard_"):
        if opts.hard_top_k is not None:
            point += [f"loss.top_k={opts.hard_top_k}", "loss.alpha=null"]
        else:
            point += [f"loss.alpha={opts.hard_alpha}", "loss.top_k=null"]
    return apply_overrides(cfg, common + list(opts.overrides) + point)


def _other_budget(cell_dir: Path, cfg: Config) -> str:
    """A warning if a finished cell trained with another budget than ``cfg`` asks for, else ""."""
    try:
        done = _read_json(cell_dir / "config.json")["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    then = (done.get("epochs"), done.get("max_time"))
    now = (cfg.train.epochs, cfg.train.max_time)
    if then == now:
        return ""
    return (
        f" (WARNING: it trained with epochs={then[0]}, max_time={then[1]}, not this "
        f"invocation's epochs={now[0]}, max_time={now[1]}; its result is kept, use a new --out "
        "to rerun it)"
    )


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _record_grid(
    out: Path, cells: Sequence[Cell], opts: SweepOptions, dataset: str | None
) -> None:
    """Append this invocation's cells to ``OUT/sweep.json`` (the order the table follows)."""
    path = out / SWEEP_FILE
    previous = _read_json(path) if path.is_file() else {"cells": [], "invocations": []}
    known = {c["name"] for c in previous["cells"]}
    previous["cells"] += [c.as_dict() for c in cells if c.name not in known]
    previous["invocations"].append(
        {
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "dataset": dataset,
            "epochs": opts.epochs,
            "max_time": opts.max_time,
            "hard_alpha": None if opts.hard_top_k is not None else opts.hard_alpha,
            "hard_top_k": opts.hard_top_k,
            "overrides": list(opts.overrides),
            "cells": [c.name for c in cells],
        }
    )
    _write_json(path, previous)


def collect_rows(out: str | Path) -> list[dict[str, Any]]:
    """One row per finished cell of the sweep in ``out`` (grid order, then any others)."""
    root = Path(out)
    cells_dir = root / "cells"
    order: list[str] = []
    if (root / SWEEP_FILE).is_file():
        order = [c["name"] for c in _read_json(root / SWEEP_FILE)["cells"]]
    found = sorted(p.name for p in cells_dir.iterdir() if p.is_dir()) if cells_dir.is_dir() else []
    rows = []
    for name in [*order, *(n for n in found if n not in order)]:
        cell_dir = cells_dir / name
        if not (cell_dir / "summary.json").is_file() or not (cell_dir / CELL_FILE).is_file():
            continue
        cell, summary = _read_json(cell_dir / CELL_FILE), _read_json(cell_dir / "summary.json")
        row = {k: summary.get(k) for k in ROW_FIELDS}
        row.update(loss=cell["loss"], policy=cell["policy"], tau=cell["tau"])
        row["run_dir"] = f"cells/{name}"
        rows.append(row)
    return rows


def run_sweep(
    cells: Sequence[Cell],
    opts: SweepOptions,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run every cell not yet finished, sequentially, then return the rows of all finished cells.

    Every cell's config is built before anything runs, so a bad override fails at once. A cell
    that raises is recorded in ``CELL_DIR/error.txt`` and the sweep moves on (Ctrl-C stops it;
    the cell's checkpoint lets the next invocation resume it).

    Args:
        runner: the per-cell training+evaluation (default :func:`contrastlab.engine.run.run`);
            tests inject a fake.
    """
    if runner is None:
        from contrastlab.engine.run import run as runner_fn

        runner = runner_fn
    out = Path(opts.out)
    configs = {cell: cell_config(cell, opts) for cell in cells}
    (out / "cells").mkdir(parents=True, exist_ok=True)
    dataset = configs[cells[0]].data.dataset if cells else opts.dataset
    _record_grid(out, cells, opts, dataset)
    result = SweepResult(rows=[])
    for i, cell in enumerate(cells, 1):
        cell_dir = out / "cells" / cell.name
        tag = f"[{i}/{len(cells)}] {cell.name}"
        if (cell_dir / "summary.json").is_file():
            log(f"{tag}: finished earlier, skipped{_other_budget(cell_dir, configs[cell])}")
            result.skipped.append(cell.name)
            continue
        # last.prev.pt alone is a checkpoint too: the trainer resumes from it (a rotation that
        # could not hard-link leaves it alone for a moment).
        resume = any(
            p.is_file() for p in (cell_dir / "last.pt", previous_path(cell_dir / "last.pt"))
        )
        cell_dir.mkdir(parents=True, exist_ok=True)
        _write_json(cell_dir / CELL_FILE, cell.as_dict())
        (cell_dir / "error.txt").unlink(missing_ok=True)
        log(f"{tag}: {'resuming from its checkpoint' if resume else 'running'}")
        t0 = time.perf_counter()
        try:
            summary = runner(configs[cell], resume=resume, run_dir=cell_dir)
        except Exception as exc:  # one broken cell must not lose the others
            (cell_dir / "error.txt").write_text(traceback.format_exc())
            result.failed[cell.name] = f"{type(exc).__name__}: {exc}"
            log(f"{tag}: FAILED ({type(exc).__name__}: {exc}); see {cell_dir / 'error.txt'}")
            continue
        (result.resumed if resume else result.ran).append(cell.name)
        log(
            f"{tag}: done in {time.perf_counter() - t0:.0f} s  linear {_fmt(summary.get('linear_top1'))}  "
            f"kNN {_fmt(summary.get('knn_top1'))}  uniformity {_fmt(summary.get('uniformity'), '.3f')}  "
            f"tolerance {_fmt(summary.get('tolerance'), '.3f')}"
        )
    result.rows = collect_rows(out)
    return result


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)
