"""Training end to end on real Fashion-MNIST: a run interrupted by Ctrl-C and resumed ends with
the same weights as an uninterrupted one; a damaged checkpoint gives a clear error."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from contrastlab.config import Config, apply_overrides
from contrastlab.engine import trainer as trainer_mod
from contrastlab.engine.run import run
from contrastlab.engine.setup import knn_monitor_for
from contrastlab.engine.trainer import train
from contrastlab.eval import bf16_is_fast
from contrastlab.methods import Method, default_lr, default_warmup


def _cfg(out: Path, method: str = "simclr", *extra: str) -> Config:
    return apply_overrides(
        Config(),
        [
            f"method.name={method}",
            "data.train_subset=512",
            "data.batch_size=128",
            "train.epochs=2",
            "model.width=8",
            "model.proj_hidden_dim=32",
            "model.proj_dim=16",
            "model.pred_hidden_dim=32",
            "method.queue_size=256",
            "train.quiet=true",
            "train.diagnostics_samples=256",
            "train.threads=1",
            f"train.out={out}",
            "train.deterministic=true",
            *extra,
        ],
    )


def _weights(method: Method) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


@pytest.mark.parametrize(
    ("method", "extra"),
    [("simclr", ()), ("moco", ()), ("moco", ("method.bn_groups=4",)), ("byol", ())],
    ids=["simclr", "moco", "moco-shuffle-bn", "byol"],
)
def test_interrupted_and_resumed_equals_uninterrupted(
    tmp_path: Path, method: str, extra: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shuffle BN draws its key permutation from the global RNG, which the checkpoint holds."""
    straight = train(_cfg(tmp_path / "a", method, *extra))
    expected = _weights(straight.method)
    stored = json.loads((tmp_path / "a" / "config.json").read_text())
    assert stored["optim"]["warmup_epochs"] == default_warmup(method)
    saved = _train_until_interrupted(_cfg(tmp_path / "b", method, *extra), monkeypatch)
    assert saved["state"]["global_step"] == 5 and saved["state"]["step_in_epoch"] == 1

    resumed = train(_cfg(tmp_path / "b", method, *extra), resume=True)
    assert resumed.state.global_step == straight.state.global_step == 8
    _assert_same_weights(resumed.method, expected, method)


def test_a_resumed_run_keeps_the_warmup_it_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BYOL run begun when its default warmup was half an epoch resumes with that warmup (its
    config.json names it), not with today's two epochs, which would change the weights."""
    old = ("optim.warmup_epochs=0.5",)
    expected = _weights(train(_cfg(tmp_path / "a", "byol", *old)).method)
    _train_until_interrupted(_cfg(tmp_path / "b", "byol", *old), monkeypatch)
    resumed = train(_cfg(tmp_path / "b", "byol"), resume=True)
    _assert_same_weights(resumed.method, expected, "byol")


def _train_until_interrupted(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Ctrl-C in the middle of epoch 1 (step 5 of 4 + 4): the step finishes, a checkpoint is
    written, KeyboardInterrupt propagates. Returns the checkpoint."""
    original = trainer_mod._Loop.step
    calls = {"n": 0}

    def step_then_interrupt(self: trainer_mod._Loop, idx: torch.Tensor) -> tuple[float, float]:
        out = original(self, idx)
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    with monkeypatch.context() as patched:
        patched.setattr(trainer_mod._Loop, "step", step_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    saved: dict[str, object] = torch.load(Path(str(cfg.train.out)) / "last.pt", weights_only=True)
    return saved


def _assert_same_weights(method: Method, expected: dict[str, torch.Tensor], name: str) -> None:
    got = _weights(method)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), f"{name}: {k} differs after resume"


def test_resuming_a_run_keeps_the_views_it_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run resumed without view settings continues with the views its checkpoint names, even
    a run from before ``data.view_size`` / ``data.solarize_p`` (full-size, unsolarized views):
    the preset's later defaults (20×20, solarized) must not switch its views mid-run."""
    views = ("data.view_size=28", "data.solarize_p=0")
    expected = _weights(train(_cfg(tmp_path / "a", "simclr", *views)).method)
    saved = _train_until_interrupted(_cfg(tmp_path / "b", "simclr", *views), monkeypatch)
    config = saved["config"]
    assert isinstance(config, dict)
    del config["data"]["view_size"], config["data"]["solarize_p"]  # as an old run wrote it
    del config["data"]["solarize_spread"], config["data"]["solarize_curve"]
    torch.save(saved, tmp_path / "b" / "last.pt")
    resumed = train(_cfg(tmp_path / "b", "simclr"), resume=True)
    assert resumed.augment.size == (28, 28)
    assert {spec.solarize_p for spec in resumed.augment.specs} == {0.0}
    assert {spec.solarize_threshold for spec in resumed.augment.specs} == {(0.5, 0.5)}
    assert {spec.solarize_curve for spec in resumed.augment.specs} == {0.0}
    _assert_same_weights(resumed.method, expected, "simclr")


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "r", "simclr", "train.epochs=1")
    train(cfg)
    ckpt = tmp_path / "r" / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="last.pt"):
        train(cfg, resume=True)


def test_run_writes_summary_and_logs(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "s", "supcon", "train.epochs=1", "eval.linear_epochs=2", "eval.knn_k=20")
    summary = run(cfg)
    on_disk = json.loads((tmp_path / "s" / "summary.json").read_text())
    for key in (
        "method",
        "dataset",
        "epochs_done",
        "train_seconds",
        "images_per_second",
        "linear_top1",
        "knn_top1",
        "untrained_linear_top1",
        "untrained_knn_top1",
        "alignment",
        "uniformity",
        "tolerance",
        "final_temperature",
    ):
        assert key in on_disk, key
    assert on_disk["final_temperature"] == pytest.approx(0.1)
    # train.amp=None: bf16 exactly where it is native, and the summary says which
    assert on_disk["bf16_autocast"] is bf16_is_fast("cpu")
    assert 10.0 < summary["linear_top1"] <= 100.0
    lines = (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    for key in (
        "loss",
        "uniformity",
        "alignment",
        "tolerance",
        "effective_rank",
        "hardness_entropy",
        "effective_negatives",
        "max_negative_weight",
        "positive_share",
        "temperature",
    ):
        assert key in rec, key
    for name in (
        "config.json",
        "encoder.pt",
        "last.pt",
        "test_features.npy",
        "test_projections.npy",
    ):
        assert (tmp_path / "s" / name).is_file(), name


def test_knn_monitor_logged_every_epoch(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "m", "simclr", "eval.knn_k=20")
    result = train(cfg)
    recs = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in recs if "epoch" in r]
    assert len(epochs) == 2
    assert all(0.0 <= r["knn_monitor_top1"] <= 100.0 for r in epochs)
    # the last value is the final backbone's kNN accuracy on the monitor's fixed subsets
    monitor = knn_monitor_for(cfg, result.train_set, result.test_set, result.device)
    assert monitor is not None
    assert monitor(result.method.backbone) == pytest.approx(epochs[-1]["knn_monitor_top1"])

    off = _cfg(tmp_path / "n", "simclr", "train.epochs=1", "train.knn_monitor=false")
    train(off)
    last = json.loads((tmp_path / "n" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "knn_monitor_top1" not in last


def test_stored_config_names_the_layout_and_old_runs_rebuild_theirs(tmp_path: Path) -> None:
    """config.json holds the pools actually built (SupCon's default 1,2) and the τ used, a run
    written before model.pools existed rebuilds the 1,3 layout it was trained with, and resuming
    with another layout or τ is refused, naming the key."""
    from contrastlab.config import config_from_run
    from contrastlab.engine.run import evaluate_saved_run

    out = tmp_path / "sup"
    cfg = _cfg(out, "supcon", "train.epochs=1", "eval.linear_epochs=1", "eval.knn_k=20")
    assert cfg.model.pools is None
    first = train(cfg)
    stored = json.loads((out / "config.json").read_text())
    assert stored["model"]["pools"] == "1,2"
    assert first.method.backbone.pools == (True, True, False)

    with pytest.raises(ValueError, match=r"model\.pools: stored '1,2', now '1,3'"):
        train(_cfg(out, "supcon", "train.epochs=1", "model.pools=1,3"), resume=True)
    assert stored["loss"]["temperature"] == 0.1  # the resolved τ; resuming at another is refused
    with pytest.raises(ValueError, match=r"loss\.temperature: stored 0\.1, now 0\.2"):
        train(_cfg(out, "supcon", "train.epochs=1", "loss.temperature=0.2"), resume=True)

    # an old run directory: same files, no "pools" key (it was trained with units 1 and 3)
    legacy = dict(stored, model={k: v for k, v in stored["model"].items() if k != "pools"})
    assert config_from_run(legacy).model.pools == "1,3"
    assert config_from_run(stored).model.pools == "1,2"
    old = tmp_path / "old"
    extra = ("train.epochs=1", "eval.linear_epochs=1", "eval.knn_k=20", "eval.untrained_baseline=false")
    trained = run(_cfg(old, "supcon", *extra, "model.pools=1,3"))
    on_disk = json.loads((old / "config.json").read_text())
    del on_disk["model"]["pools"]
    (old / "config.json").write_text(json.dumps(on_disk))
    again = evaluate_saved_run(old)  # with SupCon's new default (1,2) the features would differ
    assert again["knn_top1"] == trained["knn_top1"]
    assert again["linear_top1"] == trained["linear_top1"]


def test_view_size_trains_on_smaller_views_and_evaluates_full_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.view_size`` sets the training views' side; the encoder is still evaluated on the
    28×28 test images (diagnostics, kNN monitor); a non-positive side names the key."""
    from contrastlab.config import ConfigError
    from contrastlab.methods.simclr import SimCLR

    seen: list[tuple[int, ...]] = []
    original = SimCLR.training_step

    def spy(self: SimCLR, views: list[torch.Tensor], *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.extend(tuple(v.shape) for v in views)
        return original(self, views, *args, **kwargs)

    monkeypatch.setattr(SimCLR, "training_step", spy)
    cfg = _cfg(tmp_path / "v", "simclr", "train.epochs=1", "data.view_size=20", "eval.knn_k=20")
    result = train(cfg)
    assert seen and all(shape == (128, 1, 20, 20) for shape in seen)
    record = json.loads((tmp_path / "v" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 < record["knn_monitor_top1"] <= 100.0 and record["effective_rank"] > 0
    features = result.method.backbone(result.test_set.images[:4].float())
    assert features.shape == (4, result.method.feat_dim)

    with pytest.raises(ConfigError, match="data.view_size"):
        train(_cfg(tmp_path / "bad", "simclr", "data.view_size=0"))


def test_default_view_size_is_stored_and_old_runs_keep_full_size_views(tmp_path: Path) -> None:
    """A SimCLR run on Fashion-MNIST stores the preset's 20×20 views and solarization in
    config.json; a run directory written before ``data.view_size`` and ``data.solarize_p``
    existed (no keys) is re-evaluated with the full-size, unsolarized views it was trained with,
    so its augmentation-based diagnostics reproduce."""
    from contrastlab.engine.run import evaluate_saved_run

    train(_cfg(tmp_path / "d", "simclr", "train.epochs=1", "train.knn_monitor=false"))
    stored = json.loads((tmp_path / "d" / "config.json").read_text())["data"]
    assert stored["view_size"] == 20 and stored["solarize_p"] == 0.5  # the preset's, resolved
    assert stored["solarize_spread"] == 0.25 and stored["solarize_curve"] == 0.5

    old = tmp_path / "old"
    extra = ("train.epochs=1", "eval.linear_epochs=1", "eval.knn_k=20", "eval.untrained_baseline=false")
    trained = run(_cfg(old, "simclr", *extra, "data.view_size=28", "data.solarize_p=0"))
    on_disk = json.loads((old / "config.json").read_text())
    assert on_disk["data"]["view_size"] == 28 and on_disk["data"]["solarize_p"] == 0
    del on_disk["data"]["view_size"]
    del on_disk["data"]["solarize_p"]  # and before the preset solarized
    (old / "config.json").write_text(json.dumps(on_disk))
    again = evaluate_saved_run(old)  # at the preset's 20×20 or solarized the alignment would differ
    assert again["alignment"] == trained["alignment"]
    assert again["knn_top1"] == trained["knn_top1"]


def test_time_budget_without_epochs_trains_until_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``train.max_time`` and no ``train.epochs`` the run is not capped by the default
    epoch count: it trains until the budget, and the learning rate ends near its floor."""
    from contrastlab import config as config_mod

    monkeypatch.setattr(config_mod, "DEFAULT_EPOCHS", 1)  # a cap, if one were applied
    cfg = _cfg(
        tmp_path / "t",
        "simclr",
        "train.epochs=null",
        "train.max_time=0.04",
        "data.train_subset=256",
        "train.diagnostics_every=0",
        "train.knn_monitor=false",
    )
    assert cfg.train.epochs is None
    result = train(cfg)
    assert result.state.done and result.state.epoch >= 3
    assert result.state.train_seconds >= 0.04 * 60
    last = json.loads((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["lr"] < 0.1 * default_lr("simclr")
    # without a budget, the default count applies
    capped = train(_cfg(tmp_path / "c", "simclr", "train.epochs=null", "data.train_subset=256",
                        "train.diagnostics_every=0", "train.knn_monitor=false"))
    assert capped.state.epoch == 1


def test_a_new_run_in_an_old_directory_starts_its_logs_anew(tmp_path: Path) -> None:
    """A fresh run in a directory that holds an earlier run's logs rewrites ``metrics.jsonl``
    and the TensorBoard events rather than appending to them."""
    extra = ("train.epochs=1", "train.knn_monitor=false", "train.diagnostics_every=0")
    train(_cfg(tmp_path / "r", "simclr", *extra))
    train(_cfg(tmp_path / "r", "simclr", *extra))
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]
    assert len(list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))) == 1


def test_view_overrides_reach_the_training_views() -> None:
    """``data.solarize_p``, ``data.solarize_spread``, ``data.solarize_curve``, ``data.erase_p``,
    ``data.translate``, ``data.rotate`` and ``data.crop_min`` replace the preset's values in every
    training view; an out-of-range value names its key (and so does ``train.checkpoint_every=0``)."""
    from types import SimpleNamespace

    from contrastlab.config import ConfigError
    from contrastlab.engine.setup import prepare_run
    from contrastlab.engine.trainer import augment_of

    dataset = SimpleNamespace(name="fashion-mnist", mean=(0.29,), std=(0.35,))
    unsupervised = SimpleNamespace(needs_labels=False)
    keys = (
        "data.solarize_p=0.2",
        "data.erase_p=0.3",
        "data.translate=0.1",
        "data.rotate=12.5",
        "data.crop_min=0.4",
    )
    cfg = apply_overrides(Config(), [*keys, "data.solarize_spread=0.25", "data.solarize_curve=0.5"])
    aug = augment_of(cfg, dataset, unsupervised)  # type: ignore[arg-type]
    assert aug.size == (20, 20)  # the grayscale preset's views
    for spec in aug.specs:
        assert (spec.solarize_p, spec.erase_p, spec.translate, spec.rotate) == (0.2, 0.3, 0.1, 12.5)
        assert spec.scale[0] == 0.4 and spec.solarize_threshold == (0.25, 0.75)
        assert spec.solarize_curve == 0.5
    for bad in ("data.solarize_spread=0.6", "data.solarize_curve=1.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            augment_of(apply_overrides(Config(), [bad]), dataset, unsupervised)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="train.checkpoint_every"):
        prepare_run(apply_overrides(Config(), ["train.checkpoint_every=0"]))
    for bad in ("data.train_subset=0", "data.train_subset=-5"):  # -5 once kept all but 5
        with pytest.raises(ConfigError, match=r"data.train_subset must be >= 1"):
            prepare_run(apply_overrides(Config(), [bad]))
    for bad in ("data.rotate=200", "data.translate=0.7"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            augment_of(apply_overrides(Config(), [bad]), dataset, unsupervised)  # type: ignore[arg-type]
    plain = augment_of(Config(), dataset, unsupervised)  # type: ignore[arg-type]
    assert all(s.solarize_p == 0.5 and s.erase_p == 0.0 for s in plain.specs)  # the preset's
    assert all(s.solarize_curve == 0.5 for s in plain.specs)
    with pytest.raises(ValueError, match="solarize_p"):
        augment_of(apply_overrides(Config(), ["data.solarize_p=2.0"]), dataset, unsupervised)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="data.solarize_p"):
        apply_overrides(Config(), ["data.solarize_p=often"])


def test_precise_bn_recomputes_the_backbone_statistics_on_full_size_images(tmp_path: Path) -> None:
    """With 20×20 training views on 28×28 images, ``train.precise_bn`` None resolves to 10,000
    and the trained backbone's BN statistics describe the unaugmented full-size training images:
    the first BN layer's running mean and variance equal those of its input over all 512
    training images (one batch). With views at the images' size it resolves to 0."""
    from contrastlab.engine.evaluate import normalizer
    from contrastlab.engine.trainer import with_stored_defaults

    quiet = ("train.epochs=1", "train.amp=false", "train.knn_monitor=false", "train.diagnostics_every=0")
    result = train(_cfg(tmp_path / "p", "simclr", *quiet))
    assert json.loads((tmp_path / "p" / "config.json").read_text())["train"]["precise_bn"] == 10_000
    backbone = result.method.backbone
    images = normalizer(result.train_set)(result.train_set.images)
    with torch.no_grad():
        conv, pool, bn = backbone.unit1[0], backbone.unit1[1], backbone.unit1[2]
        pre = pool(conv(backbone.stem(images.contiguous(memory_format=torch.channels_last))))
    flat = pre.transpose(0, 1).reshape(pre.shape[1], -1)
    torch.testing.assert_close(bn.running_mean, flat.mean(dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, flat.var(dim=1), rtol=1e-4, atol=1e-5)
    saved = torch.load(tmp_path / "p" / "encoder.pt", weights_only=True)
    assert torch.equal(saved["unit1.2.running_mean"], bn.running_mean)

    full = train(_cfg(tmp_path / "f", "simclr", *quiet, "data.view_size=28"))
    assert json.loads((tmp_path / "f" / "config.json").read_text())["train"]["precise_bn"] == 0
    with torch.no_grad():
        b = full.method.backbone
        pre = b.unit1[1](b.unit1[0](b.stem(images.contiguous(memory_format=torch.channels_last))))
    assert not torch.allclose(b.unit1[2].running_mean, pre.mean(dim=(0, 2, 3)), rtol=1e-3)
    # a run from before train.precise_bn did not recompute; resuming it must not either
    old = with_stored_defaults(_cfg(tmp_path / "o"), {"train": {}}, result.train_set, supervised=False)
    assert old.train.precise_bn == 0
