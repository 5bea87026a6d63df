"""A tiny real sweep, end to end: training, evaluation, table, figures and the HTML page.

Two cells on 1,024 Fashion-MNIST training images for one epoch, evaluation lowered (no untrained
baseline, 2 linear-probe epochs, the first 1,000 test images: the config has no key for that, so
the test wraps the trainer's ``prepare_run``), then a second invocation that must not re-run
anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastlab.analysis.report import write_report
from contrastlab.analysis.sweep import SweepOptions, build_grid, run_sweep
from contrastlab.analysis.tables import write_tables

pytestmark = pytest.mark.slow

TINY = [
    "data.train_subset=1024",
    "data.batch_size=256",
    "eval.linear_epochs=2",
    "eval.untrained_baseline=false",
    "train.diagnostics_samples=256",
    "train.threads=2",
]


@pytest.fixture(scope="module")
def fashion_mnist() -> None:
    from contrastlab.data import load_dataset

    try:
        load_dataset("fashion-mnist", "test")
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Fashion-MNIST is not available ({exc}); `make system-deps` installs it")


@pytest.fixture
def small_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluate on the first 1,000 test images (embedding 10,000 twice dominates otherwise)."""
    import torch

    import contrastlab.engine.trainer as trainer

    original = trainer.prepare_run

    def prepare_run(cfg):  # type: ignore[no-untyped-def]
        train_set, test_set, device = original(cfg)
        return train_set, test_set.subset(torch.arange(1000)), device

    monkeypatch.setattr(trainer, "prepare_run", prepare_run)


def test_tiny_sweep_end_to_end(tmp_path: Path, fashion_mnist: None, small_test_split: None) -> None:
    from contrastlab.engine.run import run

    calls: list[str] = []

    def runner(cfg, *, resume=False, run_dir=None):  # type: ignore[no-untyped-def]
        calls.append(Path(run_dir).name)
        return run(cfg, resume=resume, run_dir=run_dir)

    cells = build_grid(["nt_xent", "simple"], ["fixed"], [0.5])
    opts = SweepOptions(out=tmp_path, epochs=1, overrides=TINY)
    result = run_sweep(cells, opts, runner=runner, log=lambda s: None)
    assert not result.failed, result.failed
    assert calls == ["nt_xent-fixed-tau0.5", "simple-none"]
    write_tables(result.rows, tmp_path)
    report = write_report(tmp_path)

    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["loss"], r["policy"], r["tau"]) for r in rows] == [
        ("nt_xent", "fixed", 0.5),
        ("simple", "none", None),
    ]
    for row in rows:
        for key in (
            "linear_top1",
            "knn_top1",
            "uniformity",
            "tolerance",
            "alignment",
            "effective_rank",
        ):
            assert isinstance(row[key], float), (key, row)
        assert 10.0 <= row["linear_top1"] <= 100.0 and 0.0 <= row["uniformity"] <= 4.0
    assert rows[0]["final_temperature"] == pytest.approx(0.5)
    metrics = (tmp_path / "cells/nt_xent-fixed-tau0.5/metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 and "uniformity" in json.loads(metrics[0])
    assert "| nt_xent | " in (tmp_path / "table.md").read_text()
    for name in (
        "uniformity_tolerance",
        "accuracy_vs_tau",
        "gradient_weight",
        "similarity_histograms",
    ):
        assert (tmp_path / "figures" / f"{name}.png").is_file(), name
        assert (tmp_path / "figures" / f"{name}.svg").is_file(), name
    page = report.read_text()
    assert page.count("data:image/png;base64,") == page.count("<figure") == 5

    again = run_sweep(cells, opts, runner=runner, log=lambda s: None)
    assert calls == ["nt_xent-fixed-tau0.5", "simple-none"] and len(again.skipped) == 2
