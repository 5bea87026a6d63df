"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

``save_checkpoint(path, state)`` writes to a temporary file in the same directory, flushes and
fsyncs it, hard-links the current ``path`` (if any) to ``<stem>.prev<suffix>`` (e.g. ``last.pt`` →
``last.prev.pt``), atomically renames the temporary file over ``path`` and fsyncs the directory.
At every instant ``path`` is either the old complete checkpoint or the new complete one, and the
previous checkpoint survives one more save.

Everything saved must be weights_only-safe: tensors, dicts, lists, tuples, str, int, float, bool,
None. ``capture_rng_state`` converts numpy's and Python's RNG states to such types.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastlab.data.download import umask_mode

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "load_latest",
    "previous_path",
    "restore_rng_state",
    "save_checkpoint",
]

_MARKER = "__contrastlab_checkpoint__"
_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not a contrastlab checkpoint."""


def previous_path(path: str | os.PathLike[str]) -> Path:
    """``run/last.pt`` → ``run/last.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``path``, keeping the former file as ``previous_path(path)``.

    Args:
        path: destination, e.g. ``run_dir / "last.pt"``; parent directories are created.
        state: dict of weights_only-safe values (model/optimizer/scheduler state dicts, queue and
            EMA buffers, ``capture_rng_state()``, the config as a plain dict, counters).

    Returns:
        The path written.

    Raises:
        ValueError: if ``state`` is not a dict.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    payload = {**state, _MARKER: _VERSION}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if dest.exists():
            prev = previous_path(dest)
            prev.unlink(missing_ok=True)
            try:
                os.link(dest, prev)
            except OSError:  # file systems without hard links: a rename leaves a short gap
                os.replace(dest, prev)
        umask_mode(tmp)  # mkstemp's 0600 would hide the run from the other users of a cluster
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` with ``weights_only=True``.

    Raises:
        CheckpointError: naming the file, if it is missing, truncated, corrupt, or not a
            contrastlab checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types on garbage (KeyError, EOFError, ...)
        raise CheckpointError(f"checkpoint {p} is truncated or corrupt: {e}") from e
    if not isinstance(obj, dict) or obj.get(_MARKER) is None:
        raise CheckpointError(f"{p} is not a contrastlab checkpoint (no {_MARKER} marker)")
    obj.pop(_MARKER)
    return obj


def load_latest(
    run_dir: str | os.PathLike[str], name: str = "last.pt"
) -> tuple[dict[str, Any], Path]:
    """Load ``run_dir/name``, falling back to its previous version if it is unreadable.

    Returns:
        (state, path actually loaded).

    Raises:
        CheckpointError: if neither file loads; the message names both.
    """
    path = Path(run_dir) / name
    try:
        return load_checkpoint(path), path
    except CheckpointError as first:
        prev = previous_path(path)
        try:
            state = load_checkpoint(prev)
        except CheckpointError as second:
            raise CheckpointError(f"no loadable checkpoint: {first}; {second}") from second
        warnings.warn(f"{first}; loading {prev} instead", RuntimeWarning, stacklevel=2)
        return state, prev


def capture_rng_state() -> dict[str, Any]:
    """Torch CPU (and CUDA), numpy-global and Python ``random`` states as weights_only-safe types."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)  # noqa: NPY002
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``.

    Raises:
        ValueError: if a required key is missing.
    """
    missing = {"torch", "numpy", "python"} - set(state)
    if missing:
        raise ValueError(f"RNG state is missing keys {sorted(missing)}")
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu().to(torch.uint8) for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            n["name"],
            n["keys"].cpu().numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached_gaussian"]),
        )
    )
    p = state["python"]
    random.setstate(
        (int(p["version"]), tuple(int(v) for v in p["state"].tolist()), p["gauss_next"])
    )
