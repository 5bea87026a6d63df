"""Atomic checkpoints with rotation, weights_only RNG round-trip, logging."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from contrastlab.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_latest,
    previous_path,
    restore_rng_state,
    save_checkpoint,
)
from contrastlab.engine.logging import ProgressBar, RunLogger, progress_bar
from contrastlab.nn import FeatureQueue


def _state(seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    q = FeatureQueue(5, 2)
    q.enqueue(torch.randn(3, 2))
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "queue": q.state_dict(),
        "rng": capture_rng_state(),
        "config": {"method": "simclr", "tau": 0.5, "dims": [1, 2], "note": None},
        "epoch": seed,
    }


def test_roundtrip_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, _state(1))
    assert not previous_path(path).exists()
    save_checkpoint(path, _state(2))
    assert previous_path(path).name == "last.prev.pt"
    cur, prev = load_checkpoint(path), load_checkpoint(previous_path(path))
    assert cur["epoch"] == 2 and prev["epoch"] == 1
    assert cur["config"] == {"method": "simclr", "tau": 0.5, "dims": [1, 2], "note": None}
    q = FeatureQueue(5, 2)
    q.load_state_dict(cur["queue"])
    assert len(q) == 3
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_truncated_file_raises_naming_it_and_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(path)
    with pytest.warns(RuntimeWarning, match="last.prev.pt"):
        state, used = load_latest(tmp_path)
    assert used == previous_path(path) and state["epoch"] == 1


def test_foreign_files_raise(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_checkpoint(text)
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a contrastlab checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest(tmp_path / "empty")
    assert issubclass(CheckpointError, ValueError)


def test_rng_state_weights_only_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    np.random.standard_normal()  # noqa: NPY002 (sets the cached gaussian)
    save_checkpoint(tmp_path / "last.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])  # noqa: NPY002
    random.gauss(0, 1)
    state = load_checkpoint(tmp_path / "last.pt")
    restore_rng_state(state["rng"])
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])  # noqa: NPY002
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_run_logger_jsonl_and_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.log({"loss": torch.tensor(1.5), "step": 10, "epoch": 1})
        log.log({"lr": 0.1, "bad": float("nan")}, step=11, echo=False, split="train")
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 10 and lines[0]["loss"] == 1.5
    assert lines[1]["split"] == "train" and lines[1]["bad"] == "nan"
    assert "loss 1.5" in capsys.readouterr().out
    other = tmp_path / "rank1"
    RunLogger(other, rank=1).log({"loss": 1.0}, step=0)
    assert not other.exists()


def test_run_logger_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    with RunLogger(tmp_path, quiet=True) as log:
        log.log({"loss": 2.0}, step=1)
    assert any((tmp_path / "tb").iterdir())


def test_progress_bars_disabled_when_quiet() -> None:
    bar = progress_bar(10, "epoch 1", quiet=True)
    bar.update(1)
    bar.close()
    pb = ProgressBar(range(3), total=3, quiet=True)
    assert [i for i in pb] == [0, 1, 2]
    assert pb.update_stats(images=512, loss=1.0, tau=0.1, lr=0.3) > 0
    pb.close()


def test_run_logger_writes_non_scalar_metrics_as_lists(tmp_path: Path) -> None:
    with RunLogger(tmp_path, tensorboard=False, quiet=True) as log:
        log.log({"per_class": torch.tensor([1.0, 2.5]), "grid": np.eye(2), "one": np.array([[3]])},
                step=1)
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["per_class"] == [1.0, 2.5] and line["grid"] == [[1.0, 0.0], [0.0, 1.0]]
    assert line["one"] == 3


def test_resumed_run_logger_drops_records_of_redone_steps(tmp_path: Path) -> None:
    with RunLogger(tmp_path, quiet=True, start_step=0) as log:
        for step in (10, 20, 30):
            log.log({"loss": float(step)}, step=step)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 40, "lo')  # a line the crash cut short
    # the checkpoint was taken at step 20: steps 30 and 40 are trained again
    with RunLogger(tmp_path, quiet=True, start_step=20) as log:
        log.log({"loss": 31.0}, step=30)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in lines] == [(10, 10.0), (20, 20.0), (30, 31.0)]
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tb"))
        events.Reload()
        seen = [(e.step, e.value) for e in events.Scalars("loss")]
        assert seen == [(10, 10.0), (20, 20.0), (30, 31.0)]
    with RunLogger(tmp_path, quiet=True, start_step=0, tensorboard=False) as log:
        log.log({"loss": 1.0}, step=5)  # a new run in the same directory starts anew
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_checkpoint_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "last.pt", {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644
