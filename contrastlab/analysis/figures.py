"""Figures of a temperature study (matplotlib, Agg; each saved as PNG and SVG).

* the uniformity–tolerance plane, one point per cell (Wang & Liu, CVPR 2021, Fig. 5 style);
* accuracy (linear, kNN) against τ per loss;
* the gradient weight over negatives against their similarity at several τ (Fig. 2 style);
* similarity histograms of positive pairs and random negative pairs;
* per-epoch training curves (loss, τ, uniformity, tolerance, effective rank, hardness).

:mod:`contrastlab.analysis.figure_sets` builds them from run and sweep directories.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot global state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from contrastlab.analysis.profiles import PenaltyProfile
from contrastlab.analysis.tables import row_label

__all__ = [
    "PROFILE_TAUS",
    "FigureFile",
    "accuracy_vs_tau_figure",
    "gradient_weight_figure",
    "save_figure",
    "similarity_histogram_figure",
    "training_curves_figure",
    "uniformity_tolerance_figure",
]

#: τ at which one run's embeddings are re-weighted in the gradient-weight figure.
PROFILE_TAUS = (0.07, 0.2, 0.5, 1.0)
_MARKERS = {"fixed": "o", "none": "s", "learnable": "^", "dystress": "D", "cosine": "v"}
_CURVES = (
    ("loss", "training loss"),
    ("temperature", "τ"),
    ("uniformity", "uniformity (−L_unif)"),
    ("tolerance", "tolerance"),
    ("effective_rank", "effective rank (features)"),
    ("effective_negatives_frac", "effective negatives / all"),
)


@dataclass(frozen=True)
class FigureFile:
    """A saved figure: its files and the caption the report shows."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def save_figure(
    fig: Figure, out_dir: str | Path, name: str, title: str, caption: str
) -> FigureFile:
    """Write ``NAME.png`` (120 dpi) and ``NAME.svg`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    return FigureFile(name, title, caption, png, svg)


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    unique = list(dict.fromkeys(labels))
    cmap = matplotlib.colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def uniformity_tolerance_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """One point per cell: x = uniformity, y = tolerance; colour = loss, marker = policy."""
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    colors = _colors([str(r["loss"]) for r in rows])
    seen: set[tuple[str, str]] = set()
    for r in rows:
        if r.get("uniformity") is None or r.get("tolerance") is None:
            continue
        key = (str(r["loss"]), str(r.get("policy")))
        label = row_label(r) if key not in seen else None
        seen.add(key)
        ax.scatter(
            r["uniformity"],
            r["tolerance"],
            color=colors[key[0]],
            marker=_MARKERS.get(key[1], "o"),
            s=55,
            label=label,
            edgecolors="black",
            linewidths=0.5,
        )
        if r.get("tau") is not None:
            ax.annotate(
                f"{r['tau']:g}",
                (r["uniformity"], r["tolerance"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("uniformity  −L_unif (t = 2)   → more uniform")
    ax.set_ylabel("tolerance  E[s_ij | same class]   → more tolerant")
    ax.set_title("Uniformity–tolerance plane (labels: τ)")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=8, loc="best")
    return fig


def accuracy_vs_tau_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """Linear and kNN top-1 against τ, one line per (loss, policy); τ-free cells as dotted lines."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    labels = [row_label(r) for r in rows]
    colors = _colors(labels)
    for ax, metric, title in zip(
        axes, ("linear_top1", "knn_top1"), ("linear probe", "weighted kNN"), strict=True
    ):
        for label in dict.fromkeys(labels):
            pts = sorted(
                (float(r["tau"]), float(r[metric]))
                for r in rows
                if row_label(r) == label and r.get("tau") is not None and r.get(metric) is not None
            )
            flat = [
                r[metric]
                for r in rows
                if row_label(r) == label and r.get("tau") is None and r.get(metric) is not None
            ]
            policy = next(r.get("policy") for r in rows if row_label(r) == label)
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs, ys, marker=_MARKERS.get(str(policy), "o"), color=colors[label], label=label
                )
            for v in flat:
                ax.axhline(v, color=colors[label], linestyle=":", label=f"{label} (no single τ)")
        ax.set_xscale("log")
        taus = sorted({float(r["tau"]) for r in rows if r.get("tau") is not None})
        if taus:
            ax.set_xticks(taus, [f"{t:g}" for t in taus])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("τ (initial τ for learnable)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[1].legend(fontsize=7, loc="best")
    return fig


def gradient_weight_figure(
    profile: PenaltyProfile, own: Sequence[tuple[str, float, PenaltyProfile]] = (), title: str = ""
) -> Figure:
    """Left: one run's negatives re-weighted at several τ; right (if ``own``): each run at its
    training τ. y = mean relative penalty × number of negatives (1 = uniform), log scale; the
    grey bars are the negatives' similarity density."""
    panels = 2 if own else 1
    fig = Figure(figsize=(6.6 * panels, 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels))
    series = [[(f"τ = {t:g}", t, profile) for t in profile.weight], list(own)]
    for ax, items, head in zip(
        axes, series, (title or "one run, several τ", "each run at its own τ"), strict=False
    ):
        dens = ax.twinx()
        ref = items[0][2]
        edges = np.linspace(-1.0, 1.0, len(ref.centers) + 1)
        dens.stairs(ref.counts / max(ref.counts.sum(), 1.0), edges, fill=True, color="0.85")
        dens.set_ylabel("share of negatives", color="0.5")
        dens.tick_params(axis="y", colors="0.5")
        ax.set_zorder(dens.get_zorder() + 1)
        ax.patch.set_visible(False)
        for label, tau, prof in items:
            w = prof.weight[tau]
            ok = np.isfinite(w) & (w > 0)
            ax.plot(prof.centers[ok], w[ok], marker=".", label=label)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("similarity of the negative  s_ik")
        ax.set_ylabel("relative penalty r_i(k) × #negatives")
        ax.set_title(head)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    return fig


def similarity_histogram_figure(items: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """Small multiples: per run, histograms of positive-pair and negative-pair similarities."""
    n = max(1, len(items))
    cols = min(4, n)
    nrows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 2.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharex=True, squeeze=False)).ravel()
    bins = np.linspace(-1, 1, 61)
    for ax, (label, pos, neg) in zip(axes, items, strict=False):
        ax.hist(
            neg,
            bins=bins,
            density=True,
            alpha=0.6,
            color="tab:blue",
            label="negatives",
            histtype="stepfilled",
        )
        ax.hist(
            pos,
            bins=bins,
            density=True,
            alpha=0.6,
            color="tab:orange",
            label="positives",
            histtype="stepfilled",
        )
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.supxlabel("cosine similarity", fontsize=9)
    return fig


def training_curves_figure(runs: Sequence[tuple[str, list[dict[str, Any]]]]) -> Figure:
    """Per-epoch curves of several runs: loss, τ, uniformity, tolerance, effective rank, hardness."""
    fig = Figure(figsize=(13, 6.4))
    axes = fig.subplots(2, 3).ravel()
    colors = _colors([label for label, _ in runs])
    for ax, (key, name) in zip(axes, _CURVES, strict=True):
        drawn = False
        for label, records in runs:
            pts = [(r["epoch"], r[key]) for r in records if r.get(key) is not None and "epoch" in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs, ys, marker="." if len(pts) < 30 else None, color=colors[label], label=label
                )
                drawn = True
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(
                0.5,
                0.5,
                "not logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.5",
            )
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=min(5, len(labels)),
            fontsize=8,
            bbox_to_anchor=(0.5, -0.02 - 0.03 * ((len(labels) - 1) // 5)),
        )
    fig.tight_layout()
    return fig
