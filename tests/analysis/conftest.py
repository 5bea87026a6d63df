"""Fixtures for the analysis tests: a fake ``run`` that writes a plausible run directory in
milliseconds, so the sweep, tables, figures and report are tested without training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contrastlab.analysis.sweep import Cell, SweepOptions, build_grid, run_sweep
from contrastlab.config import Config, config_to_dict
from contrastlab.metrics import alignment, effective_rank, tolerance, uniformity

FakeRunner = Callable[..., dict[str, Any]]


def fake_embeddings(
    tau: float, n: int = 300, d: int = 16, classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2, D)`` unit projections and labels: larger τ → tighter classes (more tolerance)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d))
    labels = rng.integers(0, classes, n)
    spread = 1.5 / (1.0 + 3.0 * tau)
    z1 = centers[labels] + spread * rng.normal(size=(n, d)) * np.sqrt(d / 4)
    z2 = z1 + 0.3 * rng.normal(size=(n, d))
    z = np.stack([z1, z2], axis=1)
    z /= np.linalg.norm(z, axis=2, keepdims=True)
    return z.astype(np.float32), labels.astype(np.int64)


def write_fake_run(cfg: Config, run_dir: Path, epochs: int = 3) -> dict[str, Any]:
    """What :func:`contrastlab.engine.run.run` leaves in a run directory, with fake numbers."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tau = cfg.loss.temperature if cfg.loss.temperature is not None else 0.3
    if cfg.loss.policy == "dystress":
        tau = 0.15
    z, labels = fake_embeddings(tau)
    (run_dir / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    z1, z2 = torch.from_numpy(z[:, 0]), torch.from_numpy(z[:, 1])
    uses_tau = cfg.loss.name in ("nt_xent", "hard_nt_xent")
    with (run_dir / "metrics.jsonl").open("w") as fh:
        for e in range(1, epochs + 1):
            rec = {
                "epoch": e,
                "step": 10 * e,
                "loss": 5.0 / e,
                "uniformity": 3.0 * e / epochs,
                "tolerance": 0.1 * e,
                "effective_rank": 5.0 + e,
                "effective_negatives_frac": 0.5 / e,
            }
            if uses_tau:
                rec["temperature"] = tau
            fh.write(json.dumps(rec) + "\n")
    np.save(run_dir / "test_projections.npy", z)
    np.save(run_dir / "test_labels.npy", labels)
    summary = {
        "method": "simclr",
        "dataset": cfg.data.dataset,
        "epochs_done": float(epochs),
        "steps": 10 * epochs,
        "train_seconds": 1.0,
        "images_per_second": 100.0,
        "linear_top1": 70.0 + 10 * tau,
        "knn_top1": 65.0 + 10 * tau,
        "alignment": alignment(z1, z2),
        "uniformity": uniformity(z1),
        "effective_rank": effective_rank(z1),
        "tolerance": tolerance(z1, torch.from_numpy(labels)),
        "final_temperature": tau if uses_tau else None,
        "run_dir": str(run_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary


class RecordingRunner:
    """A fake runner that records its calls and can be told to fail or be interrupted."""

    def __init__(self, fail: set[str] = frozenset(), interrupt: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail, self.interrupt = set(fail), set(interrupt)

    def __call__(
        self, cfg: Config, *, resume: bool = False, run_dir: str | Path | None = None
    ) -> dict[str, Any]:
        assert run_dir is not None
        path = Path(run_dir)
        self.calls.append((path.name, resume))
        if path.name in self.interrupt:
            (path / "last.pt").write_bytes(b"checkpoint")
            raise KeyboardInterrupt
        if path.name in self.fail:
            raise RuntimeError("boom")
        return write_fake_run(cfg, path)


@pytest.fixture
def recording_runner() -> type[RecordingRunner]:
    return RecordingRunner


SWEEP_CELLS: list[Cell] = build_grid(
    ["nt_xent", "hard_nt_xent", "simple"], ["fixed", "dystress"], [0.1, 0.5, 1.0]
)


@pytest.fixture(scope="session")
def fake_sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished fake sweep: 3 losses, fixed at 3 τ plus DySTreSS, with tables and report."""
    from contrastlab.analysis.report import write_report
    from contrastlab.analysis.tables import write_tables

    out = tmp_path_factory.mktemp("fake_sweep")
    result = run_sweep(
        SWEEP_CELLS, SweepOptions(out=out, epochs=3), runner=RecordingRunner(), log=lambda s: None
    )
    write_tables(result.rows, out)
    write_report(out)
    return out
