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
    """A JSON value for ``v``: tensors and arrays of one element become numbers, larger ones
    (nested) lists; NaN/inf become strings, which JSON can hold; anything else its ``str``."""
    if callable(getattr(v, "tolist", None)):  # tensors, numpy arrays and numpy scalars
        v = v.tolist()
        while isinstance(v, list) and len(v) == 1:  # one element, whatever its shape
            v = v[0]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep them visible
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _keep_until(jsonl: Path, step: int) -> None:
    """Rewrite ``jsonl`` (atomically) without its records of steps after ``step``, and without a
    last line that a crash cut short."""
    kept = []
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line + "\n")
    tmp = jsonl.with_name(jsonl.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, jsonl)


class RunLogger:
    """Writes ``run_dir/metrics.jsonl`` (one JSON object per line, appended and flushed),
    TensorBoard scalars under ``run_dir/tb`` and one-line console summaries.

    Args:
        run_dir: output directory (created on rank 0).
        rank: process rank; only rank 0 writes.
        quiet: no console output.
        tensorboard: also write TensorBoard scalars (skipped silently if tensorboard is missing).
        start_step: the step a run starts from. 0, a new run: ``metrics.jsonl`` and the
            TensorBoard events start anew instead of appending to an earlier run's. A resumed
            run's checkpoint step: the records up to it are kept and those of later steps
            (logged before a crash, by work the run now redoes) are dropped from
            ``metrics.jsonl`` and hidden in TensorBoard (``purge_step``), so no step appears
            twice. None (default): append to whatever is there.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        rank: int = 0,
        quiet: bool = False,
        tensorboard: bool = True,
        start_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = rank == 0
        self.quiet = quiet
        self._file: Any = None
        self._tb: Any = None
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        jsonl = self.run_dir / "metrics.jsonl"
        fresh = start_step == 0
        purge = start_step + 1 if start_step else None
        if purge is not None and jsonl.is_file():
            _keep_until(jsonl, purge - 1)
        self._file = open(jsonl, "w" if fresh else "a", encoding="utf-8")
        if fresh:
            for old in (self.run_dir / "tb").glob("events.out.tfevents.*"):
                old.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed
                self._tb = None
            else:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=purge)

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
