"""The sweep: grid semantics, per-cell configs, resume, failures; tables in Wang & Liu's layout."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import SWEEP_CELLS

from contrastlab.analysis.sweep import (
    Cell,
    SweepOptions,
    build_grid,
    cell_config,
    collect_rows,
    run_sweep,
)
from contrastlab.analysis.tables import (
    WANG_LIU_CIFAR10,
    comparison_rows,
    layout,
    to_layout_csv,
    to_markdown,
)
from contrastlab.config import ConfigError

REQUIRED = ("loss", "policy", "tau", "linear_top1", "knn_top1", "uniformity", "tolerance")
REQUIRED += ("alignment", "effective_rank")


def test_grid_semantics() -> None:
    cells = build_grid(
        ["nt_xent", "simple", "hard_nt_xent"],
        ["fixed", "learnable", "dystress", "cosine"],
        [0.1, 0.5],
    )
    names = [c.name for c in cells]
    assert names == [
        "nt_xent-fixed-tau0.1",
        "nt_xent-fixed-tau0.5",
        "nt_xent-learnable-tau0.1",
        "nt_xent-learnable-tau0.5",
        "nt_xent-dystress",
        "nt_xent-cosine",
        "simple-none",
        "hard_nt_xent-fixed-tau0.1",
        "hard_nt_xent-fixed-tau0.5",
        "hard_nt_xent-learnable-tau0.1",
        "hard_nt_xent-learnable-tau0.5",
        "hard_nt_xent-dystress",
        "hard_nt_xent-cosine",
    ]
    assert build_grid(["nt_xent"], ["fixed"], [0.2, 0.2]) == [Cell("nt_xent", "fixed", 0.2)]


@pytest.mark.parametrize(
    ("losses", "policies", "taus", "match"),
    [
        (["infonce"], ["fixed"], [0.1], "unknown loss"),
        (["nt_xent"], ["warm"], [0.1], "unknown policy"),
        (["nt_xent"], ["fixed"], [0.0], "τ must be > 0"),
        (["nt_xent"], ["fixed"], [0.1, 0.1000001], "both name the cell nt_xent-fixed-tau0.1"),
    ],
)
def test_grid_rejects_bad_input(
    losses: list[str], policies: list[str], taus: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_grid(losses, policies, taus)


def test_cell_config(tmp_path: Path) -> None:
    opts = SweepOptions(out=tmp_path, epochs=2, max_time=1.5, overrides=["data.train_subset=512"])
    cfg = cell_config(Cell("hard_nt_xent", "learnable", 0.3), opts)
    assert (cfg.loss.name, cfg.loss.policy, cfg.loss.temperature) == (
        "hard_nt_xent",
        "learnable",
        0.3,
    )
    assert cfg.loss.alpha == pytest.approx(0.0819) and cfg.loss.top_k is None
    assert (cfg.train.epochs, cfg.train.max_time, cfg.data.train_subset) == (2, 1.5, 512)
    assert cfg.data.dataset == "fashion-mnist" and cfg.method.name == "simclr"
    opts.hard_top_k = 64
    cfg = cell_config(Cell("hard_simple", "none"), opts)
    assert (cfg.loss.policy, cfg.loss.top_k, cfg.loss.alpha) == ("fixed", 64, None)
    base = tmp_path / "base.yaml"  # the base config's dataset holds unless the sweep names one
    base.write_text("data:\n  dataset: mnist\n")
    assert (
        cell_config(
            Cell("nt_xent", "fixed", 0.1), SweepOptions(out=tmp_path, config=str(base))
        ).data.dataset
        == "mnist"
    )
    opts.overrides = ["loss.nonsense=1"]
    with pytest.raises(ConfigError):
        cell_config(Cell("nt_xent", "fixed", 0.1), opts)


def test_bad_override_fails_before_any_cell_runs(tmp_path: Path, recording_runner) -> None:
    runner = recording_runner()
    with pytest.raises(ConfigError):
        run_sweep(
            SWEEP_CELLS, SweepOptions(out=tmp_path, overrides=["train.epochs=many"]), runner=runner
        )
    assert runner.calls == []


def test_resume_skips_finished_cells_and_resumes_interrupted_one(
    tmp_path: Path, recording_runner
) -> None:
    cells = build_grid(["nt_xent"], ["fixed"], [0.1, 0.5, 1.0])
    opts = SweepOptions(out=tmp_path, epochs=3)
    first = recording_runner(interrupt={"nt_xent-fixed-tau0.5"})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, opts, runner=first, log=lambda s: None)
    assert first.calls == [("nt_xent-fixed-tau0.1", False), ("nt_xent-fixed-tau0.5", False)]

    second = recording_runner()
    result = run_sweep(cells, opts, runner=second, log=lambda s: None)
    assert second.calls == [("nt_xent-fixed-tau0.5", True), ("nt_xent-fixed-tau1", False)]
    assert result.skipped == ["nt_xent-fixed-tau0.1"]
    assert result.resumed == ["nt_xent-fixed-tau0.5"] and result.ran == ["nt_xent-fixed-tau1"]
    assert [r["tau"] for r in result.rows] == [0.1, 0.5, 1.0]

    third = recording_runner()
    assert len(run_sweep(cells, opts, runner=third, log=lambda s: None).rows) == 3
    assert third.calls == []

    lines: list[str] = []  # a new budget keeps the finished cells, and says so
    run_sweep(cells, SweepOptions(out=tmp_path, epochs=5), runner=third, log=lines.append)
    assert third.calls == [] and len(lines) == 3
    assert all("WARNING: it trained with epochs=3" in line for line in lines)
    assert "epochs=5" in lines[0]


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path: Path, recording_runner) -> None:
    cells = build_grid(["nt_xent", "simple"], ["fixed"], [0.2])
    runner = recording_runner(fail={"nt_xent-fixed-tau0.2"})
    result = run_sweep(cells, SweepOptions(out=tmp_path), runner=runner, log=lambda s: None)
    assert "boom" in result.failed["nt_xent-fixed-tau0.2"]
    assert "RuntimeError" in (tmp_path / "cells/nt_xent-fixed-tau0.2/error.txt").read_text()
    assert [r["loss"] for r in result.rows] == ["simple"]
    retry = run_sweep(
        cells, SweepOptions(out=tmp_path), runner=recording_runner(), log=lambda s: None
    )
    assert not retry.failed and len(retry.rows) == 2
    assert not (tmp_path / "cells/nt_xent-fixed-tau0.2/error.txt").exists()


def test_second_grid_adds_cells_in_order(tmp_path: Path, recording_runner) -> None:
    opts = SweepOptions(out=tmp_path)
    run_sweep(
        build_grid(["nt_xent"], ["fixed"], [0.5]),
        opts,
        runner=recording_runner(),
        log=lambda s: None,
    )
    run_sweep(
        build_grid(["nt_xent"], ["dystress"], [0.5]),
        opts,
        runner=recording_runner(),
        log=lambda s: None,
    )
    rows = collect_rows(tmp_path)
    assert [(r["policy"], r["tau"]) for r in rows] == [("fixed", 0.5), ("dystress", None)]
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert len(sweep["invocations"]) == 2


def test_table_files(fake_sweep_dir: Path) -> None:
    rows = json.loads((fake_sweep_dir / "table.json").read_text())
    assert len(rows) == len(SWEEP_CELLS) == 9
    for row in rows:
        assert set(REQUIRED) <= set(row)
        assert all(row[k] is not None for k in REQUIRED if k != "tau")
    md = (fake_sweep_dir / "table.md").read_text()
    assert "| loss | τ=0.1 | τ=0.5 | τ=1 | — |" in md
    assert "| nt_xent (dystress) |" in md and "| simple |" in md
    flat = list(csv.DictReader(io.StringIO((fake_sweep_dir / "table_flat.csv").read_text())))
    assert len(flat) == 9 and flat[0]["loss"] == "nt_xent"
    wide = list(csv.reader(io.StringIO((fake_sweep_dir / "table.csv").read_text())))
    assert wide[0] == ["loss", "metric", "τ=0.1", "τ=0.5", "τ=1", "—"]
    # nt_xent, nt_xent (dystress), hard_nt_xent, hard_nt_xent (dystress), simple: 4 metrics each
    assert len(wide) == 1 + 5 * 4
    layout_json = json.loads((fake_sweep_dir / "table_layout.json").read_text())
    assert layout_json["rows"]["nt_xent"]["τ=0.5"]["run_dir"] == "cells/nt_xent-fixed-tau0.5"


def test_layout_places_cells() -> None:
    rows = [
        {"loss": "nt_xent", "policy": "fixed", "tau": 0.3, "linear_top1": 80.0, "knn_top1": 79.0,
         "uniformity": 3.6, "tolerance": 0.178},
        {"loss": "simple", "policy": "none", "tau": None, "linear_top1": 74.8, "knn_top1": None,
         "uniformity": 1.68, "tolerance": 0.61},
    ]  # fmt: skip
    labels, columns, grid = layout(rows)
    assert grid["simple"]["—"]["linear_top1"] == 74.8
    assert labels == ["nt_xent", "simple"] and columns == ["τ=0.3", "—"]
    assert "| nt_xent | 80.00 / 79.00 / 3.60 / 0.178 |  |" in to_markdown(rows)
    assert "| simple |  | 74.80 / n/a / 1.68 / 0.610 |" in to_markdown(rows)
    assert "simple,linear_top1,,74.8" in to_layout_csv(rows)
    comp = comparison_rows(rows)
    assert comp[0]["paper_linear_top1"] == WANG_LIU_CIFAR10[("nt_xent", 0.3)][0]
    assert comp[1]["paper_tolerance"] == pytest.approx(0.61)


def test_a_cell_with_only_its_previous_checkpoint_resumes(tmp_path: Path, recording_runner) -> None:
    cells = build_grid(["nt_xent"], ["fixed"], [0.2])
    cell_dir = tmp_path / "cells" / cells[0].name
    cell_dir.mkdir(parents=True)
    (cell_dir / "last.prev.pt").write_bytes(b"the trainer reads this one")
    runner = recording_runner()
    run_sweep(cells, SweepOptions(out=tmp_path, epochs=3), runner=runner, log=lambda s: None)
    assert runner.calls == [(cells[0].name, True)]
