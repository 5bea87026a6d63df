"""Figures, the HTML report and the ``sweep``/``report`` commands, on fake run directories."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import RecordingRunner, fake_embeddings, write_fake_run

from contrastlab.analysis.profiles import load_metrics, penalty_profile, similarity_samples
from contrastlab.analysis.report import write_report
from contrastlab.cli import main
from contrastlab.config import Config, apply_overrides

SWEEP_FIGURES = (
    "uniformity_tolerance",
    "accuracy_vs_tau",
    "gradient_weight",
    "similarity_histograms",
    "training_curves",
)


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_sweep_figures_png_and_svg(fake_sweep_dir: Path) -> None:
    for name in SWEEP_FIGURES:
        png, svg = (
            fake_sweep_dir / "figures" / f"{name}.png",
            fake_sweep_dir / "figures" / f"{name}.svg",
        )
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text(), name


def test_sweep_report_is_self_contained(fake_sweep_dir: Path) -> None:
    page = (fake_sweep_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not fetch anything"
    images = _images(page)
    assert len(images) == len(SWEEP_FIGURES) == page.count("<figure")
    assert all(img[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for text in (
        "Results in Wang &amp; Liu",
        "nt_xent (dystress)",
        "82.21",
        "cells/nt_xent-fixed-tau0.5",
    ):
        assert text in page


def test_single_run_report(tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["loss.name=nt_xent", "loss.temperature=0.2"])
    write_fake_run(cfg, tmp_path / "run", epochs=4)
    path = write_report(tmp_path / "run")
    page = path.read_text()
    assert path == tmp_path / "run" / "report.html"
    assert "A single run" in page and "linear probe top-1 %" in page and "nt_xent (fixed)" in page
    assert len(_images(page)) == 3  # training curves, gradient weight, similarity histograms
    assert len(load_metrics(tmp_path / "run")) == 4
    assert "weighted kNN (k = 200, t = 0.1)" in page
    # the note says how this run's kNN was measured
    other = apply_overrides(cfg, ["eval.knn_k=20", "eval.knn_t=0.07"])
    write_fake_run(other, tmp_path / "run20", epochs=2)
    assert "weighted kNN (k = 20, t = 0.07)" in write_report(tmp_path / "run20").read_text()


def test_report_of_a_run_still_training(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"loss": {"name": "simple", "policy": "fixed"}}')
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\nnot json\n')
    page = write_report(tmp_path).read_text()
    assert "No summary.json yet" in page and len(_images(page)) == 1


def test_report_rejects_other_dirs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a sweep"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2


def test_penalty_profile_closed_form() -> None:
    z, _ = fake_embeddings(0.5, n=200)
    prof = penalty_profile(z[:, 0], z[:, 1], [0.05, 1e4], bins=20, max_anchors=64, block=16)
    assert prof.n_negatives == 398 and prof.counts.sum() == 64 * 398
    for w in prof.weight.values():  # r sums to 1 per anchor, so Σ counts·(r·n_neg) = anchors·n_neg
        ok = prof.counts > 0
        assert np.sum(prof.counts[ok] * w[ok]) == pytest.approx(64 * 398, rel=1e-5)
    hot, flat = prof.weight[0.05], prof.weight[1e4]
    assert np.allclose(flat[prof.counts > 0], 1.0, atol=1e-3)  # τ → ∞: every negative equal
    filled = hot[prof.counts > 0]
    assert filled[-1] > 100 * filled[0]  # small τ: the hardest negatives take the gradient
    with pytest.raises(ValueError):
        penalty_profile(z[:, 0], z[:, 1], [0.0])


def test_similarity_samples_of_identical_views() -> None:
    z, _ = fake_embeddings(0.5, n=50)
    pos, neg = similarity_samples(z[:, 0], z[:, 0], n_negative=500)
    assert np.allclose(pos, 1.0, atol=1e-5) and neg.shape == (500,) and neg.max() < 1.0 - 1e-4


def test_cli_sweep_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import contrastlab.analysis.sweep as sweep_mod

    real = sweep_mod.run_sweep
    runner = RecordingRunner()
    monkeypatch.setattr(
        sweep_mod, "run_sweep", lambda cells, opts: real(cells, opts, runner=runner, log=print)
    )
    out = tmp_path / "sweep"
    argv = ["sweep", "--taus", "0.2", "--losses", "nt_xent", "--policies", "fixed"]
    argv += ["learnable", "--epochs", "1", "--out", str(out), "--set", "data.train_subset=256"]
    assert main(argv) == 0
    assert [name for name, _ in runner.calls] == [
        "nt_xent-fixed-tau0.2",
        "nt_xent-learnable-tau0.2",
    ]
    for name in ("table.json", "table.md", "table.csv", "table_flat.csv", "report.html"):
        assert (out / name).is_file(), name
    assert "| nt_xent (learnable) |" in capsys.readouterr().out
    (out / "report.html").unlink()
    assert main(["report", str(out), "--title", "my study"]) == 0
    assert "<title>my study</title>" in (out / "report.html").read_text()
    assert main(["sweep", "--losses", "infonce", "--out", str(out)]) == 2
