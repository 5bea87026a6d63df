"""Sweep rows → tables in Wang & Liu's layout (Markdown, CSV, JSON) and a flat CSV.

Layout (Wang & Liu, CVPR 2021, Table 1): one row per loss (and policy), one column per τ, each
cell ``linear / kNN / uniformity / tolerance``. Cells whose policy sets τ itself (DySTreSS,
cosine) or whose loss has no τ (simple, HardSimple, align_uniform) sit in the "—" column; a
learnable policy's column is its initial τ.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "NO_TAU",
    "WANG_LIU_CIFAR10",
    "comparison_rows",
    "format_cell",
    "layout",
    "paper_comparison_markdown",
    "row_label",
    "tau_label",
    "to_flat_csv",
    "to_layout_csv",
    "to_markdown",
    "write_tables",
]

NO_TAU = "—"

#: Wang & Liu (CVPR 2021) Table 1, CIFAR-10 (SPEC.md §2): (loss, τ) → (linear top-1, uniformity,
#: tolerance); None where the paper gives no number. ``hard_simple`` is their HardSimple.
WANG_LIU_CIFAR10: dict[tuple[str, float | None], tuple[float, float | None, float | None]] = {
    ("nt_xent", 0.07): (79.75, 3.86, 0.04),
    ("nt_xent", 0.3): (83.27, 3.60, 0.178),
    ("nt_xent", 0.7): (82.69, 3.17, 0.333),
    ("nt_xent", 1.0): (82.21, 2.96, 0.372),
    ("simple", None): (74.83, 1.68, 0.61),
    ("hard_nt_xent", 0.07): (79.2, None, None),
    ("hard_nt_xent", 0.3): (83.63, None, None),
    ("hard_nt_xent", 0.7): (84.19, None, None),
    ("hard_nt_xent", 1.0): (84.19, None, None),
    ("hard_simple", None): (84.84, None, None),
}


def row_label(row: dict[str, Any]) -> str:
    """``nt_xent`` for fixed τ (or no τ), ``nt_xent (dystress)`` otherwise."""
    policy = row.get("policy")
    return str(row["loss"]) if policy in ("fixed", "none", None) else f"{row['loss']} ({policy})"


def tau_label(tau: float | None) -> str:
    return NO_TAU if tau is None else f"τ={tau:g}"


def _num(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def format_cell(row: dict[str, Any]) -> str:
    """``linear / kNN / uniformity / tolerance`` (accuracies in %, two decimals)."""
    return " / ".join(
        [
            _num(row.get("linear_top1"), ".2f"),
            _num(row.get("knn_top1"), ".2f"),
            _num(row.get("uniformity"), ".2f"),
            _num(row.get("tolerance"), ".3f"),
        ]
    )


def layout(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[str], list[str], dict[str, dict[str, dict[str, Any]]]]:
    """Row labels (first-seen order), column labels (ascending τ, then "—") and the grid."""
    labels = list(dict.fromkeys(row_label(r) for r in rows))
    taus = sorted({float(r["tau"]) for r in rows if r.get("tau") is not None})
    columns = [tau_label(t) for t in taus]
    if any(r.get("tau") is None for r in rows):
        columns.append(NO_TAU)
    grid: dict[str, dict[str, dict[str, Any]]] = {label: {} for label in labels}
    for r in rows:
        grid[row_label(r)][tau_label(r.get("tau"))] = r
    return labels, columns, grid


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table in Wang & Liu's layout as GitHub Markdown."""
    labels, columns, grid = layout(rows)
    lines = [
        "Each cell: linear top-1 % / kNN top-1 % / uniformity (−L_unif, t=2) / tolerance.",
        "",
        "| loss | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label in labels:
        cells = [format_cell(grid[label][c]) if c in grid[label] else "" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_layout_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Wang & Liu's layout as CSV: one row per (loss, metric), one column per τ."""
    labels, columns, grid = layout(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["loss", "metric", *columns])
    for label in labels:
        for metric in ("linear_top1", "knn_top1", "uniformity", "tolerance"):
            values = [grid[label][c].get(metric) if c in grid[label] else None for c in columns]
            writer.writerow([label, metric, *("" if v is None else v for v in values)])
    return buf.getvalue()


def to_flat_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Every field of every row, one line per cell."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in fields})
    return buf.getvalue()


def comparison_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our cells next to Wang & Liu's CIFAR-10 numbers where the paper has the same (loss, τ).

    Only fixed-τ and τ-free cells are compared (the paper has no DySTreSS or learnable τ).
    """
    out = []
    for r in rows:
        if r.get("policy") not in ("fixed", "none"):
            continue
        tau = None if r.get("tau") is None else round(float(r["tau"]), 4)
        paper = WANG_LIU_CIFAR10.get((str(r["loss"]), tau))
        out.append(
            {
                "loss": r["loss"],
                "tau": tau,
                "linear_top1": r.get("linear_top1"),
                "knn_top1": r.get("knn_top1"),
                "uniformity": r.get("uniformity"),
                "tolerance": r.get("tolerance"),
                "paper_linear_top1": None if paper is None else paper[0],
                "paper_uniformity": None if paper is None else paper[1],
                "paper_tolerance": None if paper is None else paper[2],
            }
        )
    return out


def paper_comparison_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Side by side: ours (this dataset) vs Wang & Liu CIFAR-10 (ResNet-18, 200 epochs)."""
    lines = [
        "| loss | τ | linear (ours) | linear (W&L C10) | uniformity (ours) | uniformity (W&L) "
        "| tolerance (ours) | tolerance (W&L) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparison_rows(rows):
        lines.append(
            f"| {c['loss']} | {NO_TAU if c['tau'] is None else format(c['tau'], 'g')} "
            f"| {_num(c['linear_top1'], '.2f')} | {_num(c['paper_linear_top1'], '.2f')} "
            f"| {_num(c['uniformity'], '.2f')} | {_num(c['paper_uniformity'], '.2f')} "
            f"| {_num(c['tolerance'], '.3f')} | {_num(c['paper_tolerance'], '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    """Write ``table.json`` (the rows), ``table.md``, ``table.csv`` (layout), ``table_flat.csv``,
    ``table_layout.json`` and ``comparison.md`` into ``out``; returns the paths by kind."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    labels, columns, grid = layout(rows)
    nested = {
        label: {
            c: {
                k: grid[label][c].get(k)
                for k in ("linear_top1", "knn_top1", "uniformity", "tolerance", "run_dir")
            }
            for c in columns
            if c in grid[label]
        }
        for label in labels
    }
    files = {
        "json": ("table.json", json.dumps(list(rows), indent=2)),
        "markdown": ("table.md", to_markdown(rows)),
        "csv": ("table.csv", to_layout_csv(rows)),
        "flat_csv": ("table_flat.csv", to_flat_csv(rows)),
        "layout_json": (
            "table_layout.json",
            json.dumps({"columns": columns, "rows": nested}, indent=2),
        ),
        "comparison": ("comparison.md", paper_comparison_markdown(rows)),
    }
    paths = {}
    for kind, (name, text) in files.items():
        (root / name).write_text(text)
        paths[kind] = root / name
    return paths
