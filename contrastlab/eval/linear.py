"""Linear probe on frozen features (SPEC §9; MoCo's linear-classification protocol, He et al. 2020).

Only a single ``nn.Linear`` trains, on features extracted once from the frozen backbone (features
before the projection head, BN in eval mode). Features are standardised with the training mean and
standard deviation, which makes a short AdamW + cosine schedule converge to within a fraction of a
percent of a fully converged multinomial logistic regression in a few seconds.

``linear_probe_on_encoder`` additionally verifies afterwards that no parameter or buffer of the
encoder changed (MoCo's ``sanity_check``), raising ``RuntimeError`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.eval.features import bf16_enabled, default_normalize, extract_features

__all__ = ["LinearProbeResult", "linear_probe", "linear_probe_on_encoder", "snapshot_state"]


@dataclass
class LinearProbeResult:
    """Outcome of a linear probe.

    Attributes:
        train_top1, test_top1: accuracies in percent.
        classifier: the trained linear layer (applied to standardised features).
        mean, std: (F,) standardisation statistics (zeros/ones without standardisation).
        train_loss: final-epoch mean cross-entropy.
    """

    train_top1: float
    test_top1: float
    classifier: nn.Linear
    mean: Tensor
    std: Tensor
    train_loss: float

    def predict(self, feats: Tensor) -> Tensor:
        """(M, F) raw features → (M,) int64 predictions."""
        with torch.no_grad():
            logits: Tensor = self.classifier((feats.float() - self.mean) / self.std)
            return logits.argmax(dim=1)


def _top1(clf: nn.Linear, x: Tensor, y: Tensor) -> float:
    if x.shape[0] == 0:
        return float("nan")
    with torch.no_grad():
        correct = sum(
            int((clf(x[i : i + 8192]).argmax(1) == y[i : i + 8192]).sum())
            for i in range(0, x.shape[0], 8192)
        )
    return 100.0 * correct / x.shape[0]


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    epochs: int = 30,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
    standardize: bool = True,
    seed: int = 0,
    num_classes: int | None = None,
    amp: bool | None = None,
) -> LinearProbeResult:
    """Train a linear classifier on precomputed features.

    AdamW with a cosine learning-rate decay to 0 over ``epochs`` epochs of shuffled minibatches.
    With ``amp`` the training steps multiply bf16 copies of the standardised features and of the
    weights (fp32 accumulation, fp32 weights, loss and optimiser); the reported accuracies are
    computed in fp32. The steps are memory-bound, so halving the bytes read makes the probe of
    2048-d Fashion-MNIST features 1.4-1.9× faster (5.1-5.4 s against 7.3-10.2 s, 2 threads,
    Zen-4 EPYC) at the same test accuracy within 0.02 points (two seeds).

    Args:
        train_feats: (N, F) float features; train_labels: (N,) int labels.
        test_feats: (M, F); test_labels: (M,).
        epochs, lr, weight_decay, batch_size: optimisation settings.
        standardize: subtract the train mean and divide by the train std per feature.
        seed: seeds the classifier init and the minibatch order (the global RNG is untouched).
            The probe trains even when called under ``torch.inference_mode``.
        num_classes: inferred from the labels when None.
        amp: bf16 training steps: True, False, or None (default) where bf16 is native
            (``bf16_is_fast``), since emulated bf16 is slower than fp32.

    Returns:
        ``LinearProbeResult`` with train and test top-1 in percent.

    Raises:
        ValueError: on mismatched shapes, non-positive ``epochs``/``batch_size``/``lr``, or
            labels outside [0, ``num_classes``).
    """
    if train_feats.dim() != 2 or train_feats.shape[0] == 0:
        raise ValueError(f"train_feats must be non-empty (N, F), got {tuple(train_feats.shape)}")
    n, d = train_feats.shape
    if test_feats.dim() != 2 or test_feats.shape[1] != d:
        raise ValueError(f"test_feats must be (M, {d}), got {tuple(test_feats.shape)}")
    if train_labels.shape != (n,):
        raise ValueError(f"train_labels must be ({n},), got {tuple(train_labels.shape)}")
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(
            f"test_labels must be ({test_feats.shape[0]},), got {tuple(test_labels.shape)}"
        )
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}"
        )
    y_tr = train_labels.detach().long().cpu()
    y_te = test_labels.detach().long().cpu()
    c = num_classes
    if c is None:
        c = int(max(int(y_tr.max()), int(y_te.max()) if y_te.numel() else 0)) + 1
    for name, y in (("train_labels", y_tr), ("test_labels", y_te)):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= c):
            raise ValueError(
                f"{name} must lie in [0, num_classes={c}), got values in "
                f"[{int(y.min())}, {int(y.max())}]"
            )
    # Outside inference mode even if the caller is in it: the classifier needs autograd.
    with torch.inference_mode(False):
        return _train_probe(
            train_feats,
            y_tr,
            test_feats,
            y_te,
            c,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            standardize=standardize,
            seed=seed,
            amp=amp,
        )


def _train_probe(
    train_feats: Tensor,
    y_tr: Tensor,
    test_feats: Tensor,
    y_te: Tensor,
    c: int,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    standardize: bool,
    seed: int,
    amp: bool | None,
) -> LinearProbeResult:
    """``linear_probe``'s training, on validated (N,) / (M,) long CPU labels with ``c`` classes."""
    n, d = train_feats.shape
    x_tr = train_feats.detach().float().cpu()
    x_te = test_feats.detach().float().cpu()
    if standardize:
        mean = x_tr.mean(0)
        std = (x_tr - mean).square_().mean(0).sqrt_().clamp_min_(1e-6)
    else:
        mean, std = torch.zeros(d), torch.ones(d)
    x_tr = (x_tr - mean).div_(std)  # one temporary per split, not two (60k × 1024: 0.25 GB each)
    x_te = (x_te - mean).div_(std)

    gen = torch.Generator().manual_seed(seed)
    clf = torch.nn.utils.skip_init(nn.Linear, d, c)  # initialised below, from ``gen`` only
    with torch.no_grad():
        bound = 1.0 / math.sqrt(d)
        clf.weight.uniform_(-bound, bound, generator=gen)
        clf.bias.zero_()
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
    )
    last_loss = float("nan")
    # Each epoch's shuffled copy is made in one pass; contiguous minibatches sliced from it are
    # the same rows as gathering ``x_tr[idx]`` per step, which cost ~2.7 ms of a ~4.7 ms step
    # (batch 1024, 1024-d; the gathered rows arrive cache-cold), against ~0.6 ms per step here.
    low = bf16_enabled("cpu", amp)
    x_steps = x_tr.to(torch.bfloat16) if low else x_tr
    x_epoch = torch.empty_like(x_steps)
    y_epoch = torch.empty_like(y_tr)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            torch.index_select(x_steps, 0, perm, out=x_epoch)
            torch.index_select(y_tr, 0, perm, out=y_epoch)
            loss_sum = 0.0
            for i in range(steps_per_epoch):
                rows = slice(i * batch_size, (i + 1) * batch_size)
                xb, yb = x_epoch[rows], y_epoch[rows]
                if low:
                    w, b = clf.weight.to(torch.bfloat16), clf.bias.to(torch.bfloat16)
                    logits = F.linear(xb, w, b).float()
                else:
                    logits = clf(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * yb.numel()
            last_loss = loss_sum / n
    clf.eval()
    return LinearProbeResult(
        train_top1=_top1(clf, x_tr, y_tr),
        test_top1=_top1(clf, x_te, y_te),
        classifier=clf,
        mean=mean,
        std=std,
        train_loss=last_loss,
    )


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer by name, the non-persistent buffers included."""
    found: dict[str, Tensor] = dict(module.named_parameters(remove_duplicate=False))
    found.update(module.named_buffers(remove_duplicate=False))
    return found


def snapshot_state(module: nn.Module) -> dict[str, Tensor]:
    """Detached clones of every parameter and buffer, also those ``state_dict`` leaves out."""
    return {k: v.detach().clone() for k, v in _tensors(module).items()}


def _same(a: Tensor, b: Tensor) -> bool:
    """Exact equality in which a NaN equals a NaN in the same place."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.isclose(a, b, rtol=0.0, atol=0.0, equal_nan=True).all())
    return torch.equal(a, b)


def _changed(before: dict[str, Tensor], module: nn.Module) -> list[str]:
    after = _tensors(module)
    names = sorted(set(before) ^ set(after))
    for k in before.keys() & after.keys():
        if not _same(before[k], after[k].detach().to(before[k].device)):
            names.append(k)
    return sorted(names)


def linear_probe_on_encoder(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    normalize_fn: Callable[[Tensor], Tensor] = default_normalize,
    extract_batch_size: int = 256,
    device: torch.device | str = "cpu",
    amp: bool | None = None,
    channels_last: bool = True,
    epochs: int = 30,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    batch_size: int = 1024,
    standardize: bool = True,
    seed: int = 0,
    num_classes: int | None = None,
) -> LinearProbeResult:
    """Extract features with a frozen ``encoder`` and train a linear probe on them.

    Args:
        encoder: backbone module (B, C, H, W) → (B, F), without the projection head.
        train_images, test_images: uint8 (N, C, H, W) / (M, C, H, W).
        train_labels, test_labels: (N,) / (M,) int labels.
        Remaining arguments: as ``extract_features`` and ``linear_probe``.

    Raises:
        RuntimeError: if any encoder parameter or buffer differs after the probe from before it
            (SPEC §9's self-check); the message names the changed entries.
        ValueError: as ``extract_features`` / ``linear_probe``.
    """
    before = snapshot_state(encoder)
    kw = dict(normalize_fn=normalize_fn, batch_size=extract_batch_size, device=device, amp=amp)
    tr = extract_features(encoder, train_images, channels_last=channels_last, **kw)  # type: ignore[arg-type]
    te = extract_features(encoder, test_images, channels_last=channels_last, **kw)  # type: ignore[arg-type]
    result = linear_probe(
        tr,
        train_labels,
        te,
        test_labels,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        standardize=standardize,
        seed=seed,
        num_classes=num_classes,
        amp=amp,
    )
    changed = _changed(before, encoder)
    if changed:
        shown = ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")
        raise RuntimeError(
            f"linear probe changed the frozen encoder: {len(changed)} parameter/buffer tensors "
            f"differ ({shown})"
        )
    return result
