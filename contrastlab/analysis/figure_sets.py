"""The figure sets of a sweep directory and of a single run directory (PNG + SVG in
``DIR/figures``), each with the caption the report shows. Figures lacking data are left out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contrastlab.analysis.figures import (
    PROFILE_TAUS,
    FigureFile,
    accuracy_vs_tau_figure,
    gradient_weight_figure,
    save_figure,
    similarity_histogram_figure,
    training_curves_figure,
    uniformity_tolerance_figure,
)
from contrastlab.analysis.profiles import (
    load_metrics,
    load_projections,
    penalty_profile,
    similarity_samples,
)
from contrastlab.analysis.tables import row_label

__all__ = ["CAPTIONS", "cell_label", "run_figures", "sweep_figures"]

CAPTIONS = {
    "uniformity_tolerance": "Each point is one cell of the sweep. Wang & Liu's claim: small τ sits bottom-right "
    "(uniform but intolerant), large τ moves up and left; the hard loss should stay to the right at large τ.",
    "accuracy_vs_tau": "Top-1 accuracy of the frozen encoder against τ. Dotted lines: cells without a single τ "
    "(τ-free losses, DySTreSS, cosine schedule).",
    "gradient_weight": "How NT-Xent's gradient on the negatives is shared out: the mean relative penalty "
    "r_i(k) = exp(s_ik/τ)/Σ exp(s_ik'/τ), times the number of negatives (dashed line = every negative weighted "
    "equally), against the negative's similarity. Small τ puts almost all of it on the few most similar negatives.",
    "similarity_histograms": "Cosine similarity of positive pairs (two views of one image) and of random "
    "negative pairs on the test split.",
    "training_curves": "Diagnostics logged every epoch on a fixed evaluation subset (metrics.jsonl).",
}


def _profile_figure(
    out_dir: Path, ref: tuple[str, Path], own_runs: Sequence[tuple[str, float, Path]]
) -> FigureFile | None:
    proj = load_projections(ref[1])
    if proj is None:
        return None
    profile = penalty_profile(*proj, PROFILE_TAUS)
    own = []
    for label, tau, path in own_runs:
        p = load_projections(path)
        if p is not None:
            own.append((label, tau, penalty_profile(*p, [tau])))
    fig = gradient_weight_figure(
        profile, own, title=f"{ref[0]}: negatives re-weighted at several τ"
    )
    return save_figure(
        fig,
        out_dir,
        "gradient_weight",
        "Gradient weight over negatives",
        CAPTIONS["gradient_weight"],
    )


def _histograms(out_dir: Path, runs: Sequence[tuple[str, Path]]) -> FigureFile | None:
    items = []
    for label, path in runs[:12]:
        proj = load_projections(path)
        if proj is not None:
            items.append((label, *similarity_samples(*proj)))
    if not items:
        return None
    return save_figure(
        similarity_histogram_figure(items),
        out_dir,
        "similarity_histograms",
        "Similarity of positives and negatives",
        CAPTIONS["similarity_histograms"],
    )


def cell_label(row: dict[str, Any]) -> str:
    return row_label(row) + ("" if row.get("tau") is None else f" τ={row['tau']:g}")


def sweep_figures(sweep_dir: str | Path, rows: Sequence[dict[str, Any]]) -> list[FigureFile]:
    """All figures of a sweep into ``SWEEP_DIR/figures``; figures lacking data are left out."""
    root = Path(sweep_dir)
    out = root / "figures"
    files = []
    if rows:
        files.append(
            save_figure(
                uniformity_tolerance_figure(rows),
                out,
                "uniformity_tolerance",
                "Uniformity–tolerance plane",
                CAPTIONS["uniformity_tolerance"],
            )
        )
        files.append(
            save_figure(
                accuracy_vs_tau_figure(rows),
                out,
                "accuracy_vs_tau",
                "Accuracy against τ",
                CAPTIONS["accuracy_vs_tau"],
            )
        )
    fixed = [
        r for r in rows if r["loss"] == "nt_xent" and r.get("policy") == "fixed" and r.get("tau")
    ]
    candidates = fixed or [r for r in rows if r.get("tau")] or list(rows)
    if candidates:
        ref = min(candidates, key=lambda r: abs(float(r.get("tau") or 0.5) - 0.5))
        own = [(f"τ = {r['tau']:g}", float(r["tau"]), root / r["run_dir"]) for r in fixed]
        fig = _profile_figure(out, (cell_label(ref), root / ref["run_dir"]), own)
        if fig is not None:
            files.append(fig)
    hist = _histograms(out, [(cell_label(r), root / r["run_dir"]) for r in rows])
    if hist is not None:
        files.append(hist)
    curves = [(cell_label(r), load_metrics(root / r["run_dir"])) for r in rows]
    if any(recs for _, recs in curves):
        files.append(
            save_figure(
                training_curves_figure(curves),
                out,
                "training_curves",
                "Training curves",
                CAPTIONS["training_curves"],
            )
        )
    return files


def run_figures(run_dir: str | Path, label: str = "this run") -> list[FigureFile]:
    """The figures of a single run directory into ``RUN_DIR/figures``."""
    root = Path(run_dir)
    out = root / "figures"
    files = []
    records = load_metrics(root)
    if records:
        files.append(
            save_figure(
                training_curves_figure([(label, records)]),
                out,
                "training_curves",
                "Training curves",
                CAPTIONS["training_curves"],
            )
        )
    prof = _profile_figure(out, (label, root), [])
    if prof is not None:
        files.append(prof)
    hist = _histograms(out, [(label, root)])
    if hist is not None:
        files.append(hist)
    return files
