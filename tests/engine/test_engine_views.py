"""Which training views and loss direction a run gets: each method's default preset and
``method.symmetric`` (MoCo v2 one-directional as published, with a calmer key view), and a saved
run keeping the ones it was trained with when the defaults change."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from contrastlab.config import Config, apply_overrides, config_from_run
from contrastlab.engine.trainer import train
from contrastlab.engine.views import augment_of, preset_of, with_named_views, with_stored_defaults
from contrastlab.methods import build_method, with_model_defaults

_SMALL = (
    "model.width=8",
    "model.proj_hidden_dim=32",
    "model.proj_dim=16",
    "model.pred_hidden_dim=32",
    "method.queue_size=256",
)


def _dataset() -> SimpleNamespace:
    return SimpleNamespace(
        name="fashion-mnist", mean=(0.29,), std=(0.35,), images=torch.zeros(2, 1, 28, 28)
    )


def _cfg(method: str, *extra: str) -> Config:
    return apply_overrides(Config(), [f"method.name={method}", *_SMALL, *extra])


@pytest.mark.parametrize(
    ("method", "extra", "preset"),
    [
        ("simclr", (), "grayscale"),
        ("supcon", (), "grayscale-supervised"),
        ("moco", (), "grayscale-asym"),
        ("byol", (), "grayscale"),
        ("moco", ("method.symmetric=true",), "grayscale"),
        ("byol", ("method.symmetric=false",), "grayscale-asym"),
        ("moco", ("data.augment=grayscale",), "grayscale"),
        ("moco", ("method.supervised_queue=true",), "grayscale-supervised"),
    ],
)
def test_each_method_gets_its_default_views(
    method: str, extra: tuple[str, ...], preset: str
) -> None:
    """A one-directional loss (MoCo's default, BYOL's with ``method.symmetric=false``) takes the
    dataset's one-directional preset; symmetric and supervised methods (MoCo v2 with a labelled
    queue too) keep theirs, and an explicit ``data.augment`` wins."""
    built = build_method(_cfg(method, *extra), in_channels=1)
    assert preset_of(_cfg(method, *extra), _dataset(), built) == preset  # type: ignore[arg-type]
    # ``contrastlab config`` names the same preset from the config alone
    assert with_named_views(with_model_defaults(_cfg(method, *extra))).data.augment == preset


def test_mocos_default_key_view_keeps_its_grey_levels() -> None:
    """MoCo's default views: view 0 (the query) remaps grey levels with the preset's
    probability, view 1 (the key) never does."""
    built = build_method(_cfg("moco"), in_channels=1)
    aug = augment_of(_cfg("moco"), _dataset(), built)  # type: ignore[arg-type]
    assert [s.solarize_p for s in aug.specs] == [0.5, 0.0] and aug.size == (20, 20)
    assert built.symmetric is False  # type: ignore[attr-defined]


def test_symmetric_none_resolves_per_method_and_for_saved_runs() -> None:
    """``method.symmetric`` None is the method's default (``SYMMETRIC``), an explicit value wins,
    and a saved run that predates the key (or stores null) was symmetric."""
    resolved = {
        m: with_model_defaults(_cfg(m)).method.symmetric for m in ("simclr", "moco", "byol")
    }
    assert resolved == {"simclr": True, "moco": False, "byol": True}
    assert with_model_defaults(_cfg("moco", "method.symmetric=true")).method.symmetric is True
    assert config_from_run({"method": {"name": "moco"}}).method.symmetric is True
    assert config_from_run({"method": {"name": "moco", "symmetric": None}}).method.symmetric is True
    stored = config_from_run({"method": {"name": "byol", "symmetric": False}})
    assert stored.method.symmetric is False


def test_a_saved_run_keeps_its_preset() -> None:
    """A run stores its preset; one from before (``data.augment`` null) took the dataset's
    default of its day, which did not depend on the loss's direction, so resuming or
    re-evaluating a one-directional run of that time keeps the "grayscale" views. A preset set
    now wins."""
    cfg = with_model_defaults(_cfg("moco"))
    old = with_stored_defaults(cfg, {"data": {"augment": None}}, _dataset(), supervised=False)  # type: ignore[arg-type]
    assert old.data.augment == "grayscale"
    new = with_stored_defaults(
        cfg,
        {"data": {"augment": "grayscale-asym"}},
        _dataset(),  # type: ignore[arg-type]
        supervised=False,
    )
    assert new.data.augment == "grayscale-asym"
    mine = with_stored_defaults(
        _cfg("moco", "data.augment=grayscale"),
        {"data": {"augment": "grayscale-asym"}},
        _dataset(),  # type: ignore[arg-type]
        supervised=False,
    )
    assert mine.data.augment == "grayscale"
    sup = with_stored_defaults(_cfg("supcon"), {"data": {}}, _dataset(), supervised=True)  # type: ignore[arg-type]
    assert sup.data.augment == "grayscale-supervised"


def test_config_json_names_the_loss_direction_and_preset_used(tmp_path: Path) -> None:
    """A default MoCo run writes ``method.symmetric: false`` and ``data.augment:
    "grayscale-asym"`` to config.json, and rebuilding its config from that file gives the same
    views."""
    cfg = _cfg(
        "moco",
        "data.train_subset=256",
        "data.batch_size=128",
        "train.epochs=1",
        "train.quiet=true",
        "train.knn_monitor=false",
        "train.diagnostics_every=0",
        "train.precise_bn=0",
        "train.threads=1",
        f"train.out={tmp_path / 'r'}",
    )
    result = train(cfg)
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["method"]["symmetric"] is False
    assert stored["data"]["augment"] == "grayscale-asym"
    again = config_from_run(stored)
    assert preset_of(again, result.train_set, result.method) == "grayscale-asym"
