"""Issue-5 A/B runs of encoder variants that are not library options (seventh round).

Three modes:

``train``: ``contrastlab train`` with the small CNN changed in one of two ways (options given
before the mode), then the usual evaluation. Everything after ``--`` goes to ``contrastlab train`` unchanged.
  - ``--res-blocks A,B,C`` appends A, B and C residual basic blocks (3×3 conv, BN, ReLU, 3×3 conv,
    BN, identity shortcut, ReLU; He et al. 2016) at the output width of units 1, 2 and 3;
  - ``--feature-dropout P`` drops the backbone's pooled features with probability P in training
    (``F.dropout``; evaluation is unaffected, since the backbone is then in eval mode);
  - ``--bn-neck`` ends the backbone with a ``BatchNorm1d`` without affine parameters on the pooled
    features (the "BNNeck" of Luo et al. 2019, "Bag of Tricks and a Strong Baseline for Deep
    Person Re-identification"): features are centred and scaled per channel (batch statistics in
    training, running ones in evaluation), which the cosine kNN does not do itself (eighth round);
  - ``--conv-stem C`` replaces the space-to-depth stem by a learned one at full resolution:
    conv3×3 (C channels) → max-pool 2 → BN → ReLU, so unit 1 reads C channels instead of the
    4 pixels of each 2×2 patch (ninth round);
  - ``--max-features`` appends the last map's global max (after the ReLU) to its global mean:
    2 × ``feat_dim`` features, read by the head and by the evaluation, for almost no extra
    convolution work (twenty-ninth round);
  - ``--debiased TAU_PLUS``: SimCLR trains with the debiased NT-Xent of Chuang et al. (2020)
    at class prior TAU_PLUS (0.1 for ten balanced classes) instead of ``nt_xent`` (ninth round);
  - ``--decoupled``: SimCLR trains with the decoupled contrastive loss of Yeh et al. (2022),
    NT-Xent without the positive in its denominator (tenth round);
  - ``--head-layers N`` and ``--head-last-bn``: projection heads with N linear layers and an
    affine-free BN on the output, as in SimCLR v2 (Chen et al. 2020b; tenth round);
  - ``--grey-op KIND`` replaces what solarizing does to the views it picks (``data.solarize_p``
    of them): ``rand-threshold`` solarizes at a threshold drawn per view from U(0.25, 0.75),
    ``curve`` maps grey levels through a random non-monotone piecewise-linear curve (knots at
    0, 1/4, …, 1 with values drawn from U(0, 1) per view), ``invert`` maps x to 1 − x,
    ``rand-threshold-wide`` draws the threshold from U(0.1, 0.9) and ``mix`` gives each view
    ``rand-threshold`` or ``curve`` with probability 1/2 (eleventh round);
  - ``--view-set KEY=VALUE`` (repeatable) replaces a field of every view of the Fashion-MNIST
    presets (``grayscale`` and ``grayscale-supervised``), e.g. ``brightness=0.8`` or
    ``solarize_p=0.2``; values are parsed as Python literals (eighth round).

``eval-precise-bn``: re-evaluates a saved run as saved and after recomputing its backbone's BN
statistics (``contrastlab.nn.recompute_bn_stats``) over ``--images`` unaugmented training images
(ninth round; batches of 500 of a seeded order).

``eval-sizes``: re-evaluates a saved run (kNN and linear probe, as ``contrastlab eval``) with the
train and test images resized to each side in ``--sizes`` (bilinear, antialiased) before the
encoder: test-time resolution, as in FixRes (Touvron et al. 2019). A run trained with
``--res-blocks`` is re-evaluated with the same ``--res-blocks`` (they go before the mode). The
BN statistics are not recomputed at the new side; ``eval_resolution.py`` (twenty-ninth round)
does recompute them, and chooses the side on held-out training images.

    OMP_NUM_THREADS=1 python benchmarks/training/ab_variants.py --res-blocks 0,1,0 train -- \\
        --method simclr --max-time 10 --seed 0 --set train.threads=1 --out runs/ab7/res010
    python benchmarks/training/ab_variants.py --res-blocks 0,1,0 eval-sizes runs/ab7/res010 \\
        --sizes 28,32
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.nn import small_cnn


class BasicBlock(nn.Module):
    """Residual basic block at constant width: (B, C, H, W) → (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


def patch_small_cnn(
    res_blocks: tuple[int, int, int],
    feature_dropout: float,
    bn_neck: bool = False,
    conv_stem: int = 0,
    max_features: bool = False,
) -> None:
    """Change ``SmallCNN`` (every instance built afterwards) in this process. ``max_features``
    appends the last map's global max (after the ReLU) to its global mean: 2 × feat_dim
    features for almost no extra compute (twenty-ninth round)."""
    base_init = small_cnn.SmallCNN.__init__
    base_forward = small_cnn.SmallCNN.forward

    def init(self: small_cnn.SmallCNN, *args: object, **kwargs: object) -> None:
        base_init(self, *args, **kwargs)  # type: ignore[arg-type]
        for index, count in enumerate(res_blocks, start=1):
            unit = getattr(self, f"unit{index}")
            width = next(m.out_channels for m in unit if isinstance(m, nn.Conv2d))
            for _ in range(count):
                unit.append(BasicBlock(width))
        if bn_neck:
            self.neck = nn.BatchNorm1d(self.feat_dim, affine=False)
        if conv_stem:
            first = self.unit1[0]
            assert isinstance(first, nn.Conv2d)
            stem_conv = nn.Conv2d(first.in_channels // 4, conv_stem, 3, padding=1, bias=False)
            unit1_conv = nn.Conv2d(conv_stem, first.out_channels, 3, padding=1, bias=False)
            for conv in (stem_conv, unit1_conv):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            stem = nn.Sequential(
                stem_conv, nn.MaxPool2d(2), nn.BatchNorm2d(conv_stem), nn.ReLU(inplace=True)
            )
            self.stem = stem  # type: ignore[assignment]
            self.unit1[0] = unit1_conv
        if max_features:
            self.feat_dim *= 2

    def forward(self: small_cnn.SmallCNN, x: Tensor) -> Tensor:
        if max_features:
            conv, bn, _relu = self.unit4
            last = bn(conv(self.unit3(self.unit2(self.unit1(self.stem(x))))))
            y = torch.cat([small_cnn.relu_global_mean(last), torch.relu(last).amax(dim=(2, 3))], 1)
        else:
            y = base_forward(self, x)
        if bn_neck:
            neck: nn.Module = self.neck  # type: ignore[assignment]
            y = neck(y.float())
        return F.dropout(y, feature_dropout, self.training)

    if any(res_blocks) or bn_neck or conv_stem or max_features:
        small_cnn.SmallCNN.__init__ = init  # type: ignore[method-assign]
    if feature_dropout > 0 or bn_neck or max_features:
        small_cnn.SmallCNN.forward = forward  # type: ignore[method-assign]


def _scaled_pair_sims(
    z1: Tensor, z2: Tensor, temperature: object, step: int | None
) -> tuple[float, Tensor, Tensor, Tensor]:
    """(τ, s/τ of all 2B × 2B pairs, each anchor's positive s⁺/τ (2B,), negatives mask) for
    two (B, D) views; a fixed τ only."""
    from contrastlab.temperature import as_policy

    policy = as_policy(temperature)  # type: ignore[arg-type]
    tau = float(policy(torch.zeros(1), step=step, positive=torch.zeros(1, dtype=torch.bool)))
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n2 = z.shape[0]
    sim = z @ z.T / tau
    idx = torch.arange(n2, device=z.device)
    partner = (idx + n2 // 2) % n2
    mask = torch.ones_like(sim, dtype=torch.bool)
    mask[idx, idx] = False
    mask[idx, partner] = False
    return tau, sim, sim[idx, partner], mask


def debiased_nt_xent(
    z1: Tensor, z2: Tensor, temperature: object, *, step: int | None = None, tau_plus: float
) -> Tensor:
    """Debiased NT-Xent (Chuang et al. 2020, "Debiased Contrastive Learning", eq. 6).

    ``z1``, ``z2``: (B, D) projections of two views. Each of the 2B views is an anchor with one
    positive and N = 2B − 2 negatives, of which a fraction ``tau_plus`` (the class prior) is
    assumed to share the anchor's class. The negative term Σ exp(s⁻/τ) is replaced by
    N · max((mean exp(s⁻/τ) − τ⁺ exp(s⁺/τ)) / (1 − τ⁺), exp(−1/τ)). A fixed τ only.
    """
    tau, sim, pos, mask = _scaled_pair_sims(z1, z2, temperature, step)
    n2 = sim.shape[0]
    shift = sim.masked_fill(~mask, float("-inf")).amax(dim=1).clamp_min(pos).detach()
    exp_neg = torch.exp(sim - shift[:, None]).masked_fill(~mask, 0.0)
    exp_pos = torch.exp(pos - shift)
    n_neg = n2 - 2
    ng = (exp_neg.sum(dim=1) / n_neg - tau_plus * exp_pos) / (1.0 - tau_plus)
    ng = torch.maximum(ng, torch.exp(-1.0 / tau - shift))
    return (-torch.log(exp_pos / (exp_pos + n_neg * ng))).mean()


def decoupled_nt_xent(
    z1: Tensor, z2: Tensor, temperature: object, *, step: int | None = None
) -> Tensor:
    """Decoupled contrastive loss (Yeh et al. 2022, "Decoupled Contrastive Learning", eq. 6).

    ``z1``, ``z2``: (B, D) projections of two views. NT-Xent without the positive in the
    denominator: each of the 2B views as anchor i scores −s⁺/τ + log Σ_{k ≠ i, i⁺} exp(s_ik/τ),
    averaged. A fixed τ only (tenth round).
    """
    _, sim, pos, mask = _scaled_pair_sims(z1, z2, temperature, step)
    neg = torch.logsumexp(sim.masked_fill(~mask, float("-inf")), dim=1)
    return (neg - pos).mean()


def patch_loss(tau_plus: float, decoupled: bool = False) -> None:
    """SimCLR trains with the debiased NT-Xent at class prior ``tau_plus``, or with the
    decoupled loss, in this process."""
    from contrastlab.methods import simclr

    def loss(z1: Tensor, z2: Tensor, temperature: object, *, step: int | None = None) -> Tensor:
        if decoupled:
            return decoupled_nt_xent(z1, z2, temperature, step=step)
        return debiased_nt_xent(z1, z2, temperature, step=step, tau_plus=tau_plus)

    setattr(simclr, "nt_xent", loss)  # noqa: B010 (replace the module's binding)


def patch_head(layers: int, last_bn: bool) -> None:
    """Every projection head the method registry builds gets ``layers`` linear layers and, with
    ``last_bn``, an affine-free BN on its output (SimCLR v2's deeper head; tenth round)."""
    from contrastlab.methods import registry

    base = registry.ProjectionHead

    def head(in_dim: int, hidden_dim: int, out_dim: int, **_: object) -> nn.Module:
        return base(in_dim, hidden_dim, out_dim, num_layers=layers, last_bn=last_bn)

    setattr(registry, "ProjectionHead", head)  # noqa: B010 (replace the module's binding)


def grey_op(kind: str) -> Callable[[Tensor], Tensor]:
    """The ``--grey-op`` map of (B, C, H, W) views in [0, 1] to views in [0, 1] (eleventh round).

    Draws use the global RNG (which the run seeds), not the augmentation's generator.
    """
    from contrastlab.data.augment_ops import grey_curve as original

    def rand_threshold(x: Tensor, lo: float = 0.25, hi: float = 0.75) -> Tensor:
        t = torch.empty(x.shape[0], 1, 1, 1, device=x.device).uniform_(lo, hi)
        return torch.where(x >= t, 1.0 - x, x)

    def curve(x: Tensor, knots: int = 5) -> Tensor:  # now data.solarize_curve (round 12)
        return original(x, torch.rand(x.shape[0], knots, device=x.device, dtype=x.dtype))

    def mix(x: Tensor) -> Tensor:
        pick = (torch.rand(x.shape[0], device=x.device) < 0.5).view(-1, 1, 1, 1)
        return torch.where(pick, rand_threshold(x), curve(x))

    ops: dict[str, Callable[[Tensor], Tensor]] = {
        "rand-threshold": rand_threshold,
        "rand-threshold-wide": lambda x: rand_threshold(x, 0.1, 0.9),
        "mix": mix,
        "curve": curve,
        "invert": lambda x: 1.0 - x,
    }
    if kind not in ops:
        raise SystemExit(f"--grey-op must be one of {sorted(ops)}, got {kind!r}")
    return ops[kind]


def patch_grey_op(kind: str) -> None:
    """The views picked for solarizing get the ``--grey-op`` map instead, in this process."""
    from contrastlab.data import augment_ops

    fn = grey_op(kind)
    setattr(augment_ops, "solarize", lambda images, threshold=0.5: fn(images))  # noqa: B010


def patch_views(assignments: list[str]) -> None:
    """Replace ``KEY=VALUE`` fields of every view of the Fashion-MNIST augmentation presets."""
    from contrastlab.data import augment

    fields = {f.name for f in dataclasses.fields(augment.ViewSpec)}
    changes: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--view-set needs KEY=VALUE with KEY one of {sorted(fields)}")
        changes[key] = ast.literal_eval(value)
    for name in ("grayscale", "grayscale-supervised"):
        specs = augment.PRESETS[name]
        augment.PRESETS[name] = tuple(dataclasses.replace(s, **changes) for s in specs)  # type: ignore[arg-type]


def _load_run(run_dir: Path) -> tuple[Any, Any, Any, Any, torch.device]:
    """(config, trained method, train set, test set, device) of a saved run directory."""
    from contrastlab.config import config_from_run
    from contrastlab.engine.checkpoint import load_checkpoint
    from contrastlab.engine.trainer import CHECKPOINT, method_for, placed, prepare_run

    cfg = config_from_run(json.loads((run_dir / "config.json").read_text()))
    train_set, test_set, device = prepare_run(cfg)
    method = placed(method_for(cfg, train_set, None), cfg, device)
    method.load_state_dict(load_checkpoint(run_dir / CHECKPOINT)["method"])
    return cfg, method, train_set, test_set, device


def _print_eval(
    label: str, cfg: Any, method: Any, train_set: Any, test_set: Any, device: Any
) -> None:
    """Evaluate the backbone (kNN and linear probe, as ``contrastlab eval``) and print one line."""
    from contrastlab.engine import evaluate

    with torch.no_grad():
        out = evaluate.evaluate_backbone(method.backbone, train_set, test_set, cfg, device)
    print(
        f"{label}: linear {out['linear_top1']:.2f}  kNN {out['knn_top1']:.2f}  "
        f"({out['eval_seconds']:.0f} s)",
        flush=True,
    )


def eval_sizes(run_dir: Path, sizes: list[int]) -> None:
    """Print kNN and linear-probe top-1 of a saved run's backbone at each input side."""
    from contrastlab.engine import evaluate

    cfg, method, train_set, test_set, device = _load_run(run_dir)
    native = evaluate.normalizer

    for side in sizes:

        def resized(ds: object, side: int = side) -> Callable[[Tensor], Tensor]:
            return native(ds, side)  # type: ignore[arg-type]

        evaluate.normalizer = resized  # type: ignore[assignment]
        _print_eval(f"{run_dir.name}  side {side}", cfg, method, train_set, test_set, device)
    evaluate.normalizer = native


def eval_precise_bn(run_dir: Path, images: list[int]) -> None:
    """Print kNN and linear-probe top-1 of a saved run's backbone as saved, then after
    recomputing its BN statistics over each count of unaugmented training images (ninth round)."""
    from contrastlab.engine import evaluate
    from contrastlab.nn import recompute_bn_stats

    cfg, method, train_set, test_set, device = _load_run(run_dir)
    norm = evaluate.normalizer(train_set)
    for count in [0, *images]:
        if count:
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
            batches = (
                norm(train_set.images[idx]).contiguous(memory_format=torch.channels_last)
                for idx in torch.split(order[:count], 500)
            )
            recompute_bn_stats(method.backbone, batches)
        label = f"{run_dir.name}  precise BN over {count} images"
        _print_eval(label, cfg, method, train_set, test_set, device)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    passthrough: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, passthrough = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res-blocks", default="0,0,0", help="residual blocks after units 1,2,3")
    parser.add_argument("--feature-dropout", type=float, default=0.0, help="dropout on features")
    parser.add_argument("--bn-neck", action="store_true", help="BatchNorm1d on pooled features")
    parser.add_argument(
        "--conv-stem", type=int, default=0, help="C: conv3x3(C)-maxpool-BN-ReLU stem at full size"
    )
    parser.add_argument(
        "--max-features", action="store_true", help="global max beside the mean (2x features)"
    )
    parser.add_argument(
        "--debiased", type=float, default=0.0, help="SimCLR: debiased NT-Xent, class prior"
    )
    parser.add_argument("--decoupled", action="store_true", help="SimCLR: decoupled loss (DCL)")
    parser.add_argument("--head-layers", type=int, default=2, help="projection head's layers")
    parser.add_argument("--head-last-bn", action="store_true", help="BN on the head's output")
    parser.add_argument(
        "--grey-op", default="", help="rand-threshold, curve or invert instead of solarizing"
    )
    parser.add_argument(
        "--view-set", action="append", default=[], help="KEY=VALUE for the Fashion-MNIST views"
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("train", help="contrastlab train with a changed small CNN (args after --)")
    ev = sub.add_parser("eval-sizes", help="re-evaluate a saved run at other input sides")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--sizes", default="28,32", help="comma-separated input sides (even)")
    pbn = sub.add_parser("eval-precise-bn", help="re-evaluate a saved run after PreciseBN")
    pbn.add_argument("run_dir", type=Path)
    pbn.add_argument("--images", default="60000", help="comma-separated image counts")
    ns = parser.parse_args(args)
    blocks = tuple(int(v) for v in ns.res_blocks.split(","))
    if len(blocks) != 3 or min(blocks) < 0:
        parser.error(f"--res-blocks needs three counts >= 0, got {ns.res_blocks!r}")
    if not 0.0 <= ns.feature_dropout < 1.0:
        parser.error(f"--feature-dropout must be in [0, 1), got {ns.feature_dropout}")
    if ns.conv_stem < 0:
        parser.error(f"--conv-stem must be >= 0 channels, got {ns.conv_stem}")
    patch_small_cnn(
        (blocks[0], blocks[1], blocks[2]),
        ns.feature_dropout,
        ns.bn_neck,
        ns.conv_stem,
        ns.max_features,
    )
    patch_views(ns.view_set)
    if ns.grey_op:
        patch_grey_op(ns.grey_op)
    if not 0.0 <= ns.debiased < 1.0:
        parser.error(f"--debiased must be in [0, 1), got {ns.debiased}")
    if ns.debiased or ns.decoupled:
        patch_loss(ns.debiased, ns.decoupled)
    if ns.head_layers < 1:
        parser.error(f"--head-layers must be >= 1, got {ns.head_layers}")
    if ns.head_layers != 2 or ns.head_last_bn:
        patch_head(ns.head_layers, ns.head_last_bn)
    if ns.mode == "eval-precise-bn":
        eval_precise_bn(ns.run_dir, [int(n) for n in ns.images.split(",")])
        return 0
    if ns.mode == "eval-sizes":
        eval_sizes(ns.run_dir, [int(s) for s in ns.sizes.split(",")])
        return 0
    from contrastlab.cli import main as cli_main

    return cli_main(["train", *passthrough])


if __name__ == "__main__":
    sys.exit(main())
