"""The training loop: one function from a :class:`~contrastlab.config.Config` to a run directory.

Per step: index-slice a batch from the on-device uint8 dataset, augment it into V views on the
device, run the method's ``training_step`` under bf16 autocast (CPU) or AMP (CUDA), step the
optimiser with a warmup-cosine learning rate computed from the step (no scheduler state), then the
method's ``after_optimizer_step`` (EMA, enqueue). A checkpoint is written atomically after every
epoch and on Ctrl-C; ``resume=True`` continues exactly where it stopped, down to the RNG states.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastlab.config import (
    Config,
    config_from_run,
    config_to_dict,
    planned_epochs,
)
from contrastlab.data import ImageDataset, MultiViewAugment
from contrastlab.engine.checkpoint import (
    capture_rng_state,
    load_latest,
    previous_path,
    restore_rng_state,
    save_checkpoint,
)
from contrastlab.engine.diagnostics import Diagnostics
from contrastlab.engine.logging import RunLogger, progress_bar
from contrastlab.engine.optim import build_optimizer, param_groups, split_by_lr_scale
from contrastlab.engine.schedule import warmup_cosine
from contrastlab.engine.setup import (
    CUSTOM_BACKBONE,
    autocast_for,
    default_run_dir,
    knn_monitor_for,
    method_for,
    placed,
    precise_bn_pass,
    prepare_run,
    resolve_device,
)
from contrastlab.engine.views import (
    augment_of,
    with_resolved_views,
    with_stored_defaults,
    with_stored_warmup,
)
from contrastlab.methods import Method, default_lr, default_warmup, with_method_defaults

__all__ = [
    "RunState",
    "TrainResult",
    "augment_of",
    "autocast_for",
    "method_for",
    "placed",
    "prepare_run",
    "resolve_device",
    "train",
    "with_stored_defaults",
]

CHECKPOINT = "last.pt"


@dataclass
class RunState:
    """Where training stands: what a checkpoint holds besides the weights."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    train_seconds: float = 0.0
    images_seen: int = 0
    done: bool = False


@dataclass
class TrainResult:
    """What :func:`train` hands to the evaluation."""

    run_dir: Path
    method: Method
    train_set: ImageDataset
    test_set: ImageDataset
    augment: MultiViewAugment
    state: RunState
    device: torch.device


class _StopFlag:
    """Set by the first Ctrl-C; the loop finishes the step, checkpoints and stops."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def _deferred_interrupt() -> Iterator[_StopFlag]:
    """Turn the first SIGINT into a request to stop after the current step (a second one
    interrupts at once). Only in the main thread; elsewhere a no-op."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        flag.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return float(optimizer.param_groups[0]["lr"])


def _build_optimizer(cfg: Config, method: Method) -> torch.optim.Optimizer:
    """Decayed / excluded (bias, norm) groups, each split by the method's learning-rate factors
    (``Method.lr_scales``: BYOL's predictor), plus the method's own groups (a learnable τ).
    The schedule multiplies every group's initial lr, so the factors hold throughout."""
    lr = cfg.optim.lr if cfg.optim.lr is not None else default_lr(cfg.method.name)
    extra = method.extra_parameter_groups()
    extra_ids = {id(p) for g in extra for p in g["params"]}  # type: ignore[attr-defined]
    groups = [
        {**group, "params": [p for p in group["params"] if id(p) not in extra_ids]}
        for group in param_groups(method, cfg.optim.weight_decay)
    ]
    opt = build_optimizer(
        cfg.optim.name,
        split_by_lr_scale(groups, method.lr_scales(), lr) + extra,  # [0] keeps the logged lr
        lr=lr,
        weight_decay=cfg.optim.weight_decay,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
    )
    for group in opt.param_groups:
        group.setdefault("base_lr", group["lr"])
    return opt


def _epoch_order(n: int, batch: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    steps = n // batch
    return perm[: steps * batch].view(steps, batch).to(device)


def train(
    cfg: Config,
    *,
    resume: bool = False,
    run_dir: str | Path | None = None,
    backbone: torch.nn.Module | None = None,
) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.data`` and return the trained method and the run's state.

    Writes into the run directory: ``config.json``, ``metrics.jsonl``, TensorBoard events,
    ``init_backbone.pt`` (the untrained encoder, for the baseline), ``last.pt`` checkpoints and
    ``encoder.pt`` (final backbone weights).

    Args:
        cfg: the run's configuration.
        resume: continue from ``run_dir/last.pt`` (its stored config must match).
        run_dir: overrides ``cfg.train.out``.
        backbone: your own encoder (any ``nn.Module`` mapping (B, C, H, W) to (B, F)) instead of
            ``cfg.model.backbone``; pass an identically built one again to resume.

    Raises:
        ConfigError: invalid configuration; CheckpointError: unreadable checkpoint on resume.
    """
    warmup_given = cfg.optim.warmup_epochs is not None
    cfg = with_method_defaults(cfg)  # config.json names the architecture and lr actually used
    out = Path(run_dir or cfg.train.out or default_run_dir(cfg))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    train_set, test_set, device = prepare_run(cfg)
    if cfg.data.batch_size > len(train_set):
        raise ValueError(
            f"data.batch_size ({cfg.data.batch_size}) exceeds the training set ({len(train_set)})"
        )
    method = method_for(cfg, train_set, backbone)
    if method.needs_labels and not train_set.is_labeled:
        raise ValueError(
            f"method {cfg.method.name!r} needs labels; dataset {cfg.data.dataset!r} has none"
        )
    method = placed(method, cfg, device)
    ckpt_path = out / CHECKPOINT
    ckpt: dict[str, Any] | None = None
    if resume and (ckpt_path.exists() or previous_path(ckpt_path).exists()):
        ckpt, _ = load_latest(out, CHECKPOINT)
        cfg = with_stored_defaults(cfg, ckpt["config"], train_set, supervised=method.needs_labels)
        if not warmup_given:
            cfg = with_stored_warmup(cfg, ckpt["config"])
    augment = augment_of(cfg, train_set, method)
    cfg = with_resolved_views(cfg, augment, train_set, method)
    optimizer = _build_optimizer(cfg, method)
    aug_gen = torch.Generator().manual_seed(cfg.train.seed + 17)
    state = RunState()
    if ckpt is not None:
        stored, current = config_to_dict(config_from_run(ckpt["config"])), config_to_dict(cfg)
        for section in ("method", "model", "loss"):
            diff = [
                f"{section}.{k}: stored {v!r}, now {current[section][k]!r}"
                for k, v in stored[section].items()
                if current[section][k] != v
            ]
            if diff:
                raise ValueError(
                    f"cannot resume {ckpt_path}: its {section} config differs from this one "
                    f"({'; '.join(diff)}); pass the stored values with --set"
                )
        method.load_state_dict(ckpt["method"])
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng_state(ckpt["rng"])
        aug_gen.set_state(ckpt["aug_generator"])
        state = RunState(**ckpt["state"])
    else:
        torch.save(method.backbone.state_dict(), out / "init_backbone.pt")
        if backbone is not None:  # config.json alone cannot rebuild it: say so for `eval`
            (out / CUSTOM_BACKBONE).write_text(repr(backbone) + "\n")
        (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))

    result = TrainResult(out, method, train_set, test_set, augment, state, device)
    if state.done:
        return result
    logger = RunLogger(out, quiet=cfg.train.quiet, start_step=state.global_step)
    diagnostics = (
        Diagnostics(cfg, test_set, augment, device) if cfg.train.diagnostics_every > 0 else None
    )
    monitor = knn_monitor_for(cfg, train_set, test_set, device)

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "method": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": capture_rng_state(),
                "aug_generator": aug_gen.get_state(),
                "state": dict(vars(state)),
                "config": config_to_dict(cfg),
            },
        )

    loop = _Loop(cfg, method, optimizer, augment, aug_gen, train_set, state)
    epochs = planned_epochs(cfg)
    try:
        with _deferred_interrupt() as stop:
            while (epochs is None or state.epoch < epochs) and not state.done:
                record = loop.run_epoch(stop)
                if epochs is not None and state.epoch >= epochs:
                    state.done = True
                if state.done and cfg.train.precise_bn:  # before the last epoch's logs
                    record["precise_bn_seconds"] = precise_bn_pass(cfg, method, train_set, device)
                if diagnostics is not None and (
                    state.epoch % cfg.train.diagnostics_every == 0 or state.done or stop.requested
                ):
                    record.update(diagnostics(method, state.global_step))
                if monitor is not None:
                    record["knn_monitor_top1"] = monitor(method.backbone)
                logger.log(record, step=state.global_step)
                if stop.requested:
                    checkpoint()
                    raise KeyboardInterrupt
                if state.epoch % cfg.train.checkpoint_every == 0 or state.done:
                    checkpoint()
    finally:
        logger.close()
    torch.save(method.backbone.state_dict(), out / "encoder.pt")
    return result


class _Loop:
    """The per-step work of one run; state lives in :class:`RunState` so it checkpoints."""

    def __init__(
        self,
        cfg: Config,
        method: Method,
        optimizer: torch.optim.Optimizer,
        augment: MultiViewAugment,
        aug_gen: torch.Generator,
        train_set: ImageDataset,
        state: RunState,
    ) -> None:
        self.cfg, self.method, self.optimizer = cfg, method, optimizer
        self.augment, self.aug_gen, self.train_set, self.state = augment, aug_gen, train_set, state
        self.steps_per_epoch = len(train_set) // cfg.data.batch_size
        self.epochs = planned_epochs(cfg)
        # None: no epoch limit, the schedule follows the wall-clock budget alone
        self.total_steps = None if self.epochs is None else max(1, self.epochs * self.steps_per_epoch)
        warmup = cfg.optim.warmup_epochs
        if warmup is None:
            warmup = default_warmup(cfg.method.name)
        self.warmup = int(warmup * self.steps_per_epoch)
        self.budget = None if cfg.train.max_time is None else cfg.train.max_time * 60.0
        self.device = train_set.images.device

    def progress(self) -> float:
        """Fraction of training done: by steps, or by the wall-clock budget if that is ahead."""
        p = 0.0 if self.total_steps is None else self.state.global_step / self.total_steps
        if self.budget is not None:
            p = max(p, self.state.train_seconds / self.budget)
        return min(p, 1.0)

    def lr_factor(self) -> float:
        step, final = self.state.global_step, self.cfg.optim.final_lr_frac
        if self.budget is None:
            assert self.total_steps is not None  # planned_epochs gives a count without a budget
            return warmup_cosine(step, self.total_steps, self.warmup, 1.0, final)
        return _time_lr(self.progress(), step, self.warmup, final)

    def step(self, idx: Tensor) -> tuple[float, float]:
        """One optimiser step on the images at ``idx``; returns (loss, lr)."""
        cfg, method, st = self.cfg, self.method, self.state
        progress = self.progress()
        lr = _set_lr(self.optimizer, self.lr_factor())
        images = self.train_set.images.index_select(0, idx)
        labels = self.train_set.labels.index_select(0, idx)
        views = self.augment(images, generator=self.aug_gen)
        with autocast_for(self.device, cfg.train.amp):
            out = method.training_step(views, labels, step=st.global_step, progress=progress)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(f"loss became {float(out.loss)} at step {st.global_step}")
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        method.after_optimizer_step(step=st.global_step, progress=progress)
        return float(out.loss.detach()), lr

    def run_epoch(self, stop: _StopFlag) -> dict[str, Any]:
        """Steps until the epoch ends, the budget runs out or a stop is requested."""
        cfg, st = self.cfg, self.state
        order = _epoch_order(
            len(self.train_set), cfg.data.batch_size, cfg.train.seed, st.epoch, self.device
        )
        self.method.train()
        losses: list[float] = []
        lr, epoch_start, epoch_images = 0.0, time.perf_counter(), 0
        of = "" if self.epochs is None else f"/{self.epochs}"
        bar = progress_bar(self.steps_per_epoch, f"epoch {st.epoch + 1}{of}", quiet=cfg.train.quiet)
        bar.update(st.step_in_epoch)
        while st.step_in_epoch < self.steps_per_epoch and not stop.requested:
            t0 = time.perf_counter()
            idx = order[st.step_in_epoch]
            loss, lr = self.step(idx)
            dt = time.perf_counter() - t0
            st.train_seconds += dt
            st.global_step += 1
            st.step_in_epoch += 1
            st.images_seen += idx.numel()
            epoch_images += idx.numel()
            losses.append(loss)
            tau = self.method.temperature_value(st.global_step)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.3f}",
                img_s=f"{idx.numel() / dt:.0f}",
                lr=f"{lr:.2e}",
                tau="-" if tau is None else f"{tau:.3f}",
            )
            if self.budget is not None and st.train_seconds >= self.budget:
                st.done = True
                break
        bar.close()
        seconds = time.perf_counter() - epoch_start
        record: dict[str, Any] = {
            "epoch": st.epoch + 1,
            "step": st.global_step,
            "loss": sum(losses) / max(1, len(losses)),
            "lr": lr,
            "images_per_second": epoch_images / max(seconds, 1e-9),
            "train_seconds": st.train_seconds,
        }
        tau = self.method.temperature_value(st.global_step)
        if tau is not None:
            record["temperature"] = tau
        if st.step_in_epoch >= self.steps_per_epoch:
            st.epoch += 1
            st.step_in_epoch = 0
        return record


def _time_lr(progress: float, step: int, warmup_steps: int, final_frac: float) -> float:
    """LR factor for a wall-clock budget: warmup by steps, then cosine over the budget's fraction."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return final_frac + (1.0 - final_frac) * 0.5 * (1.0 + math.cos(math.pi * p))
