"""`contrastlab eval RUN_DIR`: re-evaluates a saved run, with evaluation-only overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastlab.cli import main
from contrastlab.config import Config, apply_overrides
from contrastlab.engine.run import run

TINY = [
    "data.train_subset=512",
    "data.batch_size=128",
    "train.epochs=1",
    "model.width=8",
    "model.proj_hidden_dim=32",
    "model.proj_dim=16",
    "train.quiet=true",
    "train.diagnostics_every=0",
    "train.knn_monitor=false",
    "train.threads=1",
    "eval.linear_epochs=2",
    "eval.knn_k=20",
    "eval.untrained_baseline=false",
]


def test_eval_reproduces_knn_and_takes_eval_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = run(apply_overrides(Config(), [*TINY, f"train.out={out}"]))
    assert main(["eval", str(out), "--set", "eval.linear_epochs=3"]) == 0
    assert "weighted kNN top-1" in capsys.readouterr().out
    again = json.loads((out / "summary.json").read_text())
    # the same frozen backbone and data: the kNN vote is deterministic
    assert again["knn_top1"] == pytest.approx(first["knn_top1"])
    assert again["steps"] == first["steps"]
    assert again["bf16_autocast"] == first["bf16_autocast"]  # the training's, kept
    assert 10.0 < again["linear_top1"] <= 100.0

    # a damaged last.pt falls back to last.prev.pt, as --resume does
    (out / "last.prev.pt").write_bytes((out / "last.pt").read_bytes())
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match=r"last.pt is truncated.*loading .*last.prev.pt"):
        assert main(["eval", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["knn_top1"] == pytest.approx(
        first["knn_top1"]
    )
    capsys.readouterr()

    # anything that would change the trained model is refused, naming the key
    assert main(["eval", str(out), "--set", "optim.lr=1.0"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["eval", str(out), "--set", "eval.linear_epoch=3"]) == 2
    assert "linear_epoch" in capsys.readouterr().err


def test_eval_of_a_directory_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
