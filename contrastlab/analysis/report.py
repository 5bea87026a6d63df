"""A self-contained static HTML report of a sweep directory or a single run directory.

Everything is in one file (figures as base64 PNG, CSS and a few lines of script inline), so it
opens from disk with no server and no network. The page's script records JavaScript errors and,
once loaded, how many images decoded (``<body data-status="ready" data-images-total=...
data-images-loaded=... data-errors=...>``) so a headless browser can check it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contrastlab.analysis.figure_sets import cell_label, run_figures, sweep_figures
from contrastlab.analysis.figures import FigureFile
from contrastlab.analysis.sweep import SWEEP_FILE, collect_rows
from contrastlab.analysis.tables import (
    comparison_rows,
    format_cell,
    layout,
)

__all__ = ["is_run_dir", "is_sweep_dir", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232b;
background:#f6f7f9;line-height:1.5}
header{background:#1f3b57;color:#fff;padding:28px 48px}
header h1{margin:0 0 6px;font-size:1.7em} header p{margin:4px 0;max-width:70em;opacity:.92}
main{padding:12px 48px 40px;max-width:1280px}
section{background:#fff;border-radius:8px;padding:16px 24px;margin:18px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin-top:4px;color:#1f3b57;font-size:1.25em}
table{border-collapse:collapse;font-size:.88em;margin:8px 0}
th,td{border:1px solid #d8dde3;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#eef2f6} td:first-child,th:first-child{text-align:left}
figure{margin:16px 0} figure img{max-width:100%;border:1px solid #e3e6ea}
figcaption{font-size:.9em;color:#4a5561;max-width:70em}
.note{font-size:.88em;color:#4a5561} code{background:#eef2f6;padding:1px 4px;border-radius:3px}
footer{font-size:.8em;color:#6b7580;padding:0 48px 24px}
"""

_SCRIPT = """
(function(){var errs=[];window.addEventListener('error',function(e){errs.push(String(e.message||e));
document.body&&(document.body.dataset.errors=errs.length);},true);
window.addEventListener('load',function(){var imgs=Array.prototype.slice.call(document.images);
var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;
var b=document.body;b.dataset.imagesTotal=imgs.length;b.dataset.imagesLoaded=ok;
b.dataset.errors=errs.length;b.dataset.status='ready';});})();
"""

_INTRO = (
    "Why does a temperature work? Wang &amp; Liu (CVPR 2021) show that the contrastive loss is "
    "<em>hardness-aware</em>: a small τ concentrates the gradient on the hardest negatives, which "
    "spreads the embeddings uniformly over the sphere but pushes apart samples of the same class "
    "(low <em>tolerance</em>); a large τ does the reverse. Their hard contrastive loss keeps "
    "uniformity at large τ while raising tolerance, and DySTreSS (Manna et al. 2023) picks τ per pair."
)

def _metrics_note(run_dir: Path | None) -> str:
    """What the accuracies and metrics mean, with the kNN's k and t read from the run's
    ``config.json`` (``eval.knn_k`` / ``eval.knn_t``; 200 / 0.1 if it is missing)."""
    ev: dict[str, Any] = {}
    if run_dir is not None and (run_dir / "config.json").is_file():
        ev = json.loads((run_dir / "config.json").read_text()).get("eval", {})
    k, t = ev.get("knn_k", 200), ev.get("knn_t", 0.1)
    return (
        "Accuracies are top-1 (%) on the test split with the frozen encoder: a linear probe and a "
        f"weighted kNN (k = {_e(k)}, t = {_e(t)}). Uniformity is −L_unif = −log E exp(−2‖z_i − z_j‖²) "
        "(higher is more uniform, at most 4); tolerance is the mean cosine similarity of same-class "
        "pairs; both on normalised projections of the test split."
    )


def is_sweep_dir(path: str | Path) -> bool:
    """A sweep directory holds ``sweep.json`` or a ``cells/`` folder."""
    p = Path(path)
    return (p / SWEEP_FILE).is_file() or (p / "cells").is_dir()


def is_run_dir(path: str | Path) -> bool:
    """A run directory holds ``summary.json``, ``metrics.jsonl`` or ``config.json``."""
    p = Path(path)
    return any((p / f).is_file() for f in ("summary.json", "metrics.jsonl", "config.json"))


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"  # as in table.md
    if isinstance(value, float):
        return format(value, spec)
    return _e(value)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _figure_html(fig: FigureFile) -> str:
    data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{_e(fig.name)}"><img alt="{_e(fig.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)} "
        f"(Also saved as <code>figures/{_e(fig.svg.name)}</code>.)</figcaption></figure>"
    )


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
        f"<body><header><h1>{_e(title)}</h1><p>{subtitle}</p><p>{_INTRO}</p></header>"
        f"<main>{''.join(sections)}</main>"
        f"<footer>Generated by <code>contrastlab report</code> on {stamp}. "
        "Self-contained: figures are embedded; PNG and SVG copies are in <code>figures/</code>.</footer>"
        "</body></html>\n"
    )


def _layout_table(rows: Sequence[dict[str, Any]]) -> str:
    labels, columns, grid = layout(rows)
    body = [
        [_e(label)] + [_e(format_cell(grid[label][c])) if c in grid[label] else "" for c in columns]
        for label in labels
    ]
    return _table(["loss", *(_e(c) for c in columns)], body)


def _comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    body = [
        [
            _e(c["loss"]),
            "—" if c["tau"] is None else _e(format(c["tau"], "g")),
            _num(c["linear_top1"], ".2f"),
            _num(c["paper_linear_top1"], ".2f"),
            _num(c["uniformity"], ".2f"),
            _num(c["paper_uniformity"], ".2f"),
            _num(c["tolerance"]),
            _num(c["paper_tolerance"]),
        ]
        for c in comparison_rows(rows)
    ]
    header = ["loss", "τ", "linear (ours)", "linear (W&amp;L)", "uniformity (ours)"]
    return _table(
        [*header, "uniformity (W&amp;L)", "tolerance (ours)", "tolerance (W&amp;L)"], body
    )


def _cells_table(rows: Sequence[dict[str, Any]]) -> str:
    body = [
        [
            _e(cell_label(r)),
            _num(r.get("linear_top1"), ".2f"),
            _num(r.get("knn_top1"), ".2f"),
            _num(r.get("uniformity")),
            _num(r.get("tolerance")),
            _num(r.get("alignment")),
            _num(r.get("effective_rank"), ".1f"),
            _num(r.get("final_temperature")),
            _num(r.get("epochs_done"), ".2f"),
            _num(r.get("train_seconds"), ".0f"),
            f"<code>{_e(r.get('run_dir'))}</code>",
        ]
        for r in rows
    ]
    header = ["cell", "linear %", "kNN %", "uniformity", "tolerance", "alignment", "eff. rank"]
    return _table([*header, "final τ", "epochs", "train s", "run directory"], body)


def _grid_note(root: Path) -> str:
    path = root / SWEEP_FILE
    if not path.is_file():
        return ""
    info = json.loads(path.read_text())
    items = []
    for inv in info.get("invocations", []):
        budget = ", ".join(
            x
            for x in (
                f"{inv['epochs']} epochs" if inv.get("epochs") is not None else "",
                f"at most {inv['max_time']:g} min of training" if inv.get("max_time") else "",
            )
            if x
        )
        hard = (
            f"top_k = {inv['hard_top_k']}"
            if inv.get("hard_top_k")
            else f"α = {inv.get('hard_alpha')}"
        )
        extra = (
            f"; overrides <code>{_e(' '.join(inv['overrides']))}</code>"
            if inv.get("overrides")
            else ""
        )
        items.append(
            f"<li>{_e(inv.get('time', ''))}: {_e(inv.get('dataset'))}, {len(inv.get('cells', []))} cells, "
            f"{_e(budget or 'default budget')} per cell; hard losses {_e(hard)}{extra}</li>"
        )
    return f"<ul class='note'>{''.join(items)}</ul>"


def _sweep_sections(root: Path) -> tuple[str, list[str]]:
    rows = collect_rows(root)
    figs = sweep_figures(root, rows)
    dataset = ""
    first = root / rows[0]["run_dir"] if rows else None
    if first is not None:
        summary = json.loads((first / "summary.json").read_text())
        dataset = str(summary.get("dataset", ""))
    subtitle = f"A temperature sweep on <b>{_e(dataset or '?')}</b>: {len(rows)} finished cells."
    semantics = (
        "<p class='note'>Grid: fixed and learnable policies run at every τ (learnable: the initial τ); "
        "DySTreSS and the cosine schedule set τ themselves (τ_min/τ_max) and sit in the “—” column, as do "
        "losses without a temperature (simple, HardSimple, align_uniform).</p>"
    )
    sections = [
        _section(
            "Results in Wang & Liu's layout",
            "<p class='note'>Each cell: linear % / kNN % / uniformity / tolerance. "
            f"{_metrics_note(first)}</p>"
            + _layout_table(rows)
            + semantics
            + _grid_note(root),
            "table",
        ),
        _section(
            "Next to Wang & Liu's CIFAR-10 numbers",
            "<p class='note'>Their Table 1: ResNet-18, memory bank, 200 epochs on CIFAR-10; ours: the dataset "
            "and budget above. Absolute numbers are not comparable; the trends are.</p>"
            + _comparison_table(rows),
            "paper",
        ),
    ]
    sections += [_section(f.title, _figure_html(f), f"sec-{f.name}") for f in figs]
    sections.append(_section("All cells", _cells_table(rows), "cells"))
    return subtitle, sections


_RUN_KEYS = (
    ("method", "method"),
    ("dataset", "dataset"),
    ("epochs_done", "epochs"),
    ("train_seconds", "training seconds"),
    ("images_per_second", "images / s"),
    ("linear_top1", "linear probe top-1 %"),
    ("knn_top1", "weighted kNN top-1 %"),
    ("untrained_linear_top1", "untrained encoder, linear %"),
    ("untrained_knn_top1", "untrained encoder, kNN %"),
    ("alignment", "alignment"),
    ("uniformity", "uniformity (−L_unif)"),
    ("tolerance", "tolerance"),
    ("effective_rank", "effective rank"),
    ("final_temperature", "final τ"),
)


def _run_sections(root: Path) -> tuple[str, list[str]]:
    summary: dict[str, Any] = {}
    if (root / "summary.json").is_file():
        summary = json.loads((root / "summary.json").read_text())
    loss: dict[str, Any] = {}
    if (root / "config.json").is_file():
        loss = json.loads((root / "config.json").read_text()).get("loss", {})
    label = f"{loss.get('name', '?')} ({loss.get('policy', '?')})"
    figs = run_figures(root, label=label)
    body = [[_e(name), _num(summary.get(key))] for key, name in _RUN_KEYS if key in summary]
    subtitle = f"A single run: <b>{_e(summary.get('method', '?'))}</b> on <b>{_e(summary.get('dataset', '?'))}</b>, loss {_e(label)}."
    sections = [
        _section(
            "Summary",
            (
                _table(["quantity", "value"], body)
                if body
                else "<p>No summary.json yet (training not finished).</p>"
            )
            + f"<p class='note'>{_metrics_note(root)}</p>",
            "summary",
        )
    ]
    if loss:
        cfg_rows = [[_e(k), _e(v)] for k, v in loss.items() if v is not None]
        sections.append(
            _section("Loss and temperature settings", _table(["key", "value"], cfg_rows), "config")
        )
    sections += [_section(f.title, _figure_html(f), f"sec-{f.name}") for f in figs]
    return subtitle, sections


def write_report(path: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the HTML report of a sweep or run directory (default ``PATH/report.html``).

    Raises:
        FileNotFoundError: ``path`` is neither a sweep nor a run directory.
    """
    root = Path(path)
    if is_sweep_dir(root):
        subtitle, sections = _sweep_sections(root)
        title = title or "contrastlab temperature study"
    elif is_run_dir(root):
        subtitle, sections = _run_sections(root)
        title = title or f"contrastlab run report: {root.name}"
    else:
        raise FileNotFoundError(
            f"{root} is neither a sweep directory (sweep.json, cells/) nor a run directory"
        )
    target = Path(out) if out is not None else root / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_page(title, subtitle, sections), encoding="utf-8")
    return target
