"""Evaluation-side checks of a saved Fashion-MNIST run (fifteenth round): does the linear probe
gain from mirror images, from padding, or from averaging an image's features with its mirror's?

For a finished run directory, the encoder's features are extracted for the training and test
images as they are, mirrored left-right, and zero-padded to 32×32 (centred, and on the right
and bottom only, so that the max-pools drop no row or column), and the default probe
(30 epochs of AdamW, lr 1e-2, weight decay 5e-6, the run's seed) is trained on:

- ``plain``: the training features (the run's own linear score);
- ``flip-data-30`` / ``flip-data-15``: the training features and those of the mirrored
  training images (120,000 rows), 30 or 15 epochs;
- ``flip-average``: each image's features averaged with its mirror image's, for the training
  and the test images alike (test-time augmentation; not the standard protocol);
- ``pad32`` / ``pad32-rb``: the padded images' features (probe and weighted kNN).

Prints one line per setting and writes ``probeviews-RUN.json`` beside the run directory.

    python benchmarks/training/probe_views.py runs/bench-training/simclr-s0-10.0m-v14-probe16
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from probe_sweep import DEFAULT, load_run  # same folder: the script's directory is on sys.path
from torch import Tensor

from contrastlab.engine.evaluate import normalizer
from contrastlab.eval import extract_features
from contrastlab.eval.knn import knn_accuracy
from contrastlab.eval.linear import linear_probe


def mirror(x: Tensor) -> Tensor:
    return torch.flip(x, dims=[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)
    cfg, train, test, method = load_run(ns.run_dir)

    def feats(transform: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        def one(images: Tensor) -> Tensor:
            return extract_features(method.backbone, transform(images), normalize_fn=normalizer(train),
                                    amp=cfg.train.amp, channels_last=cfg.train.channels_last)

        return one(train.images), one(test.images)

    def probe(x: Tensor, y: Tensor, x_test: Tensor, epochs: int = DEFAULT[0]) -> float:
        return linear_probe(x, y, x_test, test.labels, epochs=epochs, lr=DEFAULT[1],
                            weight_decay=DEFAULT[2], seed=cfg.train.seed).test_top1

    y = train.labels
    f, f_test = feats(lambda x: x)
    m, m_test = feats(mirror)
    both, yy = torch.cat([f, m]), torch.cat([y, y])
    out: dict[str, float] = {
        "plain": probe(f, y, f_test),
        "flip-data-30": probe(both, yy, f_test),
        "flip-data-15": probe(both, yy, f_test, epochs=15),
        "flip-average": probe((f + m) / 2, y, (f_test + m_test) / 2),
    }
    for name, pad in (("pad32", (2, 2, 2, 2)), ("pad32-rb", (0, 4, 0, 4))):
        g, g_test = feats(functools.partial(F.pad, pad=pad))
        out[name] = probe(g, y, g_test)
        out[name + "-knn"] = knn_accuracy(g, y, g_test, test.labels)
    out["plain-knn"] = knn_accuracy(f, y, f_test, test.labels)
    for key, value in out.items():
        print(f"{ns.run_dir.name}  {key:>14}  {value:.2f}", flush=True)
    (ns.run_dir.parent / f"probeviews-{ns.run_dir.name}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
