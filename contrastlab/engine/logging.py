"""Run logging: JSONL metrics, TensorBoard scalars, a console summary and a tqdm progress bar.

Only rank 0 writes anything; other ranks get a logger whose methods do nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["ProgressBar", "RunLogger", "progress_bar"]

T = TypeVar("T")


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):  # 0-d tensors / numpy scalars
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep them visible
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


class RunLogger:
    """Writes ``run_dir/metrics.jsonl`` (one JSON object per line, appended and flushed),
    TensorBoard scalars under ``run_dir/tb`` and one-line console summaries.

    Args:
        run_dir: output directory (created on rank 0).
        rank: process rank; only rank 0 writes.
        quiet: no console output.
        tensorboard: also write TensorBoard scalars (skipped silently if tensorboard is missing).
        fresh: a new run in this directory: start ``metrics.jsonl`` and the TensorBoard events
            anew instead of appending to an earlier run's (a resumed run appends).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        rank: int = 0,
        quiet: bool = False,
        tensorboard: bool = True,
        fresh: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = rank == 0
        self.quiet = quiet
        self._file: Any = None
        self._tb: Any = None
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "w" if fresh else "a", encoding="utf-8")
        if fresh:
            for old in (self.run_dir / "tb").glob("events.out.tfevents.*"):
                old.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log(
        self,
        metrics: Mapping[str, Any],
        step: int | None = None,
        *,
        echo: bool = True,
        **tags: Any,
    ) -> None:
        """Append ``{"step": step, **tags, **metrics, "time": unix}`` to metrics.jsonl.

        ``step`` defaults to ``metrics["step"]`` (0 if absent). Numeric metrics also go to
        TensorBoard at that step. With ``echo`` (and not quiet) a one-line summary is printed:
        call it once per epoch with the epoch's record, and with ``echo=False`` for per-step logs.
        """
        if not self.enabled:
            return
        if step is None:
            step = int(metrics.get("step", 0))
        record = {"step": int(step), **{k: _jsonable(v) for k, v in tags.items()}}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        record["time"] = time.time()
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                val = _jsonable(v)
                if k != "step" and isinstance(val, (int, float)) and not isinstance(val, bool):
                    self._tb.add_scalar(k, val, int(step))
            self._tb.flush()
        if echo:
            self.summary({k: v for k, v in metrics.items() if k != "step"})

    def summary(self, metrics: Mapping[str, Any]) -> str:
        """Print (unless quiet) and return one line: ``epoch 3 | loss 4.12 | lr 0.3``."""
        parts = []
        for k, v in metrics.items():
            val = _jsonable(v)
            parts.append(f"{k} {val:.4g}" if isinstance(val, float) else f"{k} {val}")
        line = " | ".join(parts)
        if self.enabled and not self.quiet:
            print(line, flush=True)
        return line

    def close(self) -> None:
        """Flush and close the files (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress_bar(total: int, desc: str = "", quiet: bool = False, rank: int = 0) -> tqdm[Any]:
    """A manual tqdm bar (``update(n)``, ``set_postfix(...)``, ``close()``) over ``total`` steps,
    with ETA; disabled when ``quiet``, on ranks other than 0, or when stderr is not a TTY."""
    disable = quiet or rank != 0 or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False)


class ProgressBar:
    """tqdm bar over an iterable showing images/s, loss, τ, lr and the ETA.

    Disabled when ``quiet``, on ranks other than 0, or when stderr is not a TTY (logs stay clean).

    Usage::

        bar = ProgressBar(loader, total=len(loader), desc="epoch 3")
        for batch in bar:
            ...
            bar.update_stats(images=batch_size, loss=loss.item(), tau=tau, lr=lr)
    """

    def __init__(
        self,
        iterable: Iterable[T],
        total: int | None = None,
        desc: str = "",
        quiet: bool = False,
        rank: int = 0,
    ) -> None:
        self.disabled = quiet or rank != 0 or not sys.stderr.isatty()
        self._bar = tqdm(
            iterable,
            total=total,
            desc=desc,
            disable=self.disabled,
            dynamic_ncols=True,
            leave=False,
        )
        self._t0 = time.perf_counter()
        self._images = 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self._bar)

    def update_stats(
        self,
        images: int,
        loss: float | None = None,
        tau: float | None = None,
        lr: float | None = None,
    ) -> float:
        """Add ``images`` processed; refresh the postfix. Returns the running images/s."""
        self._images += images
        rate = self._images / max(time.perf_counter() - self._t0, 1e-9)
        if not self.disabled:
            post: dict[str, str] = {"img/s": f"{rate:.0f}"}
            if loss is not None:
                post["loss"] = f"{loss:.4f}"
            if tau is not None:
                post["τ"] = f"{tau:.4g}"
            if lr is not None:
                post["lr"] = f"{lr:.3g}"
            self._bar.set_postfix(post, refresh=False)
        return rate

    def close(self) -> None:
        self._bar.close()
