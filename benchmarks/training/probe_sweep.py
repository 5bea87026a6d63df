"""Linear-probe settings chosen on held-out training labels (twelfth round).

For a finished Fashion-MNIST run directory: the encoder's features of the 60,000 training
images are split (seeded) into 50,000 to train the probe and 10,000 to score it; every
setting of the grid is scored there; then the default probe and the setting that was best
held out are trained on all 60,000 and scored on the test split. Writes
``probesweep-RUN.json`` beside the run directory.

    python benchmarks/training/probe_sweep.py runs/bench-training/simclr-s0-10.0m-v12-curve05
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from contrastlab.config import Config, config_from_run
from contrastlab.data import ImageDataset, load_dataset
from contrastlab.engine.evaluate import normalizer
from contrastlab.engine.setup import method_for, placed
from contrastlab.eval import extract_features
from contrastlab.eval.linear import linear_probe
from contrastlab.methods import Method

DEFAULT = (30, 1e-2, 5e-6)  # EvalConfig's linear_epochs, linear_lr, linear_weight_decay


def load_run(run_dir: Path) -> tuple[Config, ImageDataset, ImageDataset, Method]:
    """A finished Fashion-MNIST run's config, the training and test splits, and its method on
    the CPU with the trained backbone loaded (``encoder.pt``, ``weights_only``)."""
    cfg = config_from_run(json.loads((run_dir / "config.json").read_text()))
    train, test = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", "test")
    method = placed(method_for(cfg, train, None), cfg, torch.device("cpu"))
    method.backbone.load_state_dict(torch.load(run_dir / "encoder.pt", weights_only=True))
    return cfg, train, test, method


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 60, 100])
    p.add_argument("--lr", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2])
    p.add_argument("--weight-decay", type=float, nargs="+", default=[5e-6, 1e-4, 1e-3])
    p.add_argument("--holdout", type=int, default=10_000, help="training images held out")
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)
    cfg, train, test, method = load_run(ns.run_dir)
    feats, test_feats = (
        extract_features(
            method.backbone,
            ds.images,
            normalize_fn=normalizer(train),
            amp=cfg.train.amp,
            channels_last=cfg.train.channels_last,
        )
        for ds in (train, test)
    )
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(123))
    fit, held = perm[: len(train) - ns.holdout], perm[len(train) - ns.holdout :]
    out: dict[str, dict[str, float]] = {}
    for epochs, lr, wd in itertools.product(ns.epochs, ns.lr, ns.weight_decay):
        t0 = time.perf_counter()
        r = linear_probe(feats[fit], train.labels[fit], feats[held], train.labels[held],
                         epochs=epochs, lr=lr, weight_decay=wd, seed=0)
        key = f"{epochs}/{lr:g}/{wd:g}"
        out[key] = {"heldout": r.test_top1, "train": r.train_top1}
        print(f"{key:>16}  held-out {r.test_top1:.2f}  train {r.train_top1:.2f}  "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    best = max(out, key=lambda k: out[k]["heldout"])
    default = "{}/{:g}/{:g}".format(*DEFAULT)
    for key in dict.fromkeys((default, best)):
        epochs, lr, wd = key.split("/")
        r = linear_probe(feats, train.labels, test_feats, test.labels, epochs=int(epochs),
                         lr=float(lr), weight_decay=float(wd), seed=cfg.train.seed)
        out.setdefault(key, {})["test"] = r.test_top1
        print(f"{key}: test {r.test_top1:.2f} (held-out {out[key].get('heldout', float('nan')):.2f})")
    (ns.run_dir.parent / f"probesweep-{ns.run_dir.name}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
