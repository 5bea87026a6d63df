"""Each method on real Fashion-MNIST: a few steps reduce its loss, gradients reach exactly the
parameters that should train, and the evaluation forward has no side effects."""

from __future__ import annotations

import pytest
import torch

from contrastlab.config import Config, ConfigError, apply_overrides
from contrastlab.data import augment_for, load_dataset
from contrastlab.methods import METHODS, MoCo, build_method

FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, object]:
    ds = load_dataset("fashion-mnist", "train")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds), generator=g)[:64]
    aug = augment_for(ds, views=2)
    return ds.images[idx], ds.labels[idx], aug


def _cfg(method: str, **extra: str) -> Config:
    sets = [
        f"method.name={method}",
        "model.width=16",
        "model.proj_hidden_dim=64",
        "model.proj_dim=32",
        "model.pred_hidden_dim=64",
        "method.queue_size=128",
        "data.batch_size=64",  # the batch below: the queue must hold whole batches
    ]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return apply_overrides(Config(), sets)


def _frozen_names(method: torch.nn.Module) -> set[str]:
    return {n for n, p in method.named_parameters() if n.startswith(("key_", "target_"))}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_few_steps_reduce_loss_and_gradients_reach_the_right_parameters(name: str, batch) -> None:
    images, labels, aug = batch
    torch.manual_seed(0)
    method = build_method(_cfg(name), in_channels=1)
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    fixed_views = aug(images, generator=gen)
    losses = []
    for step in range(12):
        out = method.training_step(fixed_views, labels, step=step, progress=step / 12)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            frozen = _frozen_names(method)
            for pname, p in method.named_parameters():
                if pname in frozen:
                    assert p.grad is None and not p.requires_grad, (
                        f"{pname} (EMA/key) got a gradient"
                    )
                else:
                    assert p.grad is not None, f"{pname} received no gradient"
                    assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        opt.step()
        method.after_optimizer_step(step=step, progress=step / 12)
        losses.append(float(out.loss))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, f"{name}: loss did not fall: {losses}"


def test_moco_eval_forward_leaves_queue_and_key_encoder_alone(batch) -> None:
    images, labels, aug = batch
    method = build_method(_cfg("moco"), in_channels=1)
    assert isinstance(method, MoCo)
    views = aug(images, seed=3)
    out = method.training_step(views, labels, step=0, progress=0.0)
    out.loss.backward()
    method.after_optimizer_step(step=0, progress=0.0)
    queue_before = method.queue.features.clone()
    ptr_before = int(method.queue.ptr)
    keys_before = [p.clone() for p in method.key_backbone.parameters()]
    method.eval()
    with torch.no_grad():
        method.encode(views[0])
        method.project(views[0])
    assert torch.equal(method.queue.features, queue_before)
    assert int(method.queue.ptr) == ptr_before
    for a, b in zip(keys_before, method.key_backbone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_moco_enqueues_only_after_the_optimizer_step(batch) -> None:
    images, labels, aug = batch
    method = build_method(_cfg("moco"), in_channels=1)
    views = aug(images, seed=4)
    before = method.queue.features.clone()
    out = method.training_step(views, labels, step=0, progress=0.0)
    assert torch.equal(method.queue.features, before), "training_step must not enqueue"
    out.loss.backward()
    method.after_optimizer_step(step=0, progress=0.0)
    assert not torch.equal(method.queue.features, before)
    assert int(method.queue.filled) == images.shape[0]


def test_supervised_moco_queue_labels(batch) -> None:
    images, labels, aug = batch
    method = build_method(_cfg("moco", **{"method.supervised_queue": "true"}), in_channels=1)
    views = aug(images, seed=5)
    for step in range(3):
        out = method.training_step(views, labels, step=step, progress=0.0)
        out.loss.backward()
        method.after_optimizer_step(step=step, progress=0.0)
    filled = method.queue.labels[method.queue.labels >= 0]
    assert filled.numel() == 128  # 3 × 64 keys wrapped around a queue of 128
    assert set(filled.tolist()) <= set(labels.tolist())


def test_supcon_requires_labels(batch) -> None:
    images, _, aug = batch
    method = build_method(_cfg("supcon"), in_channels=1)
    with pytest.raises(ValueError, match="labels"):
        method.training_step(aug(images, seed=0), None, step=0, progress=0.0)


def test_learnable_temperature_gets_its_own_group_and_gradient(batch) -> None:
    images, labels, aug = batch
    cfg = _cfg("simclr", **{"loss.policy": "learnable", "loss.temperature_lr": "0.01"})
    method = build_method(cfg, in_channels=1)
    groups = method.extra_parameter_groups()
    assert len(groups) == 1 and groups[0]["lr"] == 0.01 and groups[0]["weight_decay"] == 0.0
    assert groups[0]["lars_exclude"] is True  # a scalar: no layer-wise trust ratio under LARS
    out = method.training_step(aug(images, seed=0), labels, step=0, progress=0.0)
    out.loss.backward()
    assert method.temperature is not None
    assert method.temperature.log_scale.grad is not None  # type: ignore[union-attr]


def test_feat_dim_sets_the_small_cnn_feature_width() -> None:
    method = build_method(_cfg("simclr", **{"model.feat_dim": "96"}), in_channels=1)
    assert method.feat_dim == 96
    assert method.backbone(torch.zeros(2, 1, 28, 28)).shape == (2, 96)
    with pytest.raises(ConfigError, match="model.backbone.*feat_dim"):
        build_method(_cfg("simclr", **{"model.backbone": "resnet18", "model.feat_dim": "96"}), 3)


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_one_directional_loss_is_one_term_of_the_symmetric_loss(name: str, batch) -> None:
    """In eval mode (BN on running statistics, so batch composition does not matter) the
    symmetric loss is the two one-directional losses combined: summed for BYOL (two regression
    terms), averaged for MoCo (InfoNCE is a mean over all 2B queries)."""
    images, labels, aug = batch
    v0, v1 = aug(images, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    sym = build_method(_cfg(name, **{"method.symmetric": "true"}), in_channels=1).eval()
    one = build_method(_cfg(name, **{"method.symmetric": "false"}), in_channels=1).eval()
    one.load_state_dict(sym.state_dict())
    with torch.no_grad():
        both = float(sym.training_step([v0, v1], labels, step=0, progress=0.0).loss)
        forward = float(one.training_step([v0, v1], labels, step=0, progress=0.0).loss)
        backward = float(one.training_step([v1, v0], labels, step=0, progress=0.0).loss)
    combined = forward + backward if name == "byol" else (forward + backward) / 2
    assert forward != pytest.approx(backward)
    assert both == pytest.approx(combined, rel=1e-5)  # the losses compute in float32


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_one_directional_step_trains_and_freezes_the_right_parameters(name: str, batch) -> None:
    images, labels, aug = batch
    torch.manual_seed(0)
    method = build_method(_cfg(name, **{"method.symmetric": "false"}), in_channels=1)
    views = aug(images, generator=torch.Generator().manual_seed(1))
    out = method.training_step(views, labels, step=0, progress=0.0)
    out.loss.backward()
    frozen = _frozen_names(method)
    for pname, p in method.named_parameters():
        assert (p.grad is None) == (pname in frozen), pname


def test_symmetric_false_is_refused_where_it_does_not_apply() -> None:
    with pytest.raises(ConfigError, match="method.symmetric"):
        build_method(_cfg("simclr", **{"method.symmetric": "false"}), in_channels=1)


def test_small_cnn_defaults_per_method_and_a_users_width() -> None:
    """SupCon's default CNN is 48-96-192-1024 with a learned stem, pooled after units 1 and 2;
    SimCLR's, MoCo's and BYOL's the same pooled after units 1 and 3; a width the user sets gives
    w-2w-4w-32w, with the method's stem; and a config written before these defaults (feat_dim
    null) rebuilds a last width of 32 × width."""
    from contrastlab.config import config_from_run, config_to_dict
    from contrastlab.methods import with_model_defaults

    def model(*sets: str):
        return with_model_defaults(apply_overrides(Config(), list(sets))).model

    sup = model("method.name=supcon")
    assert (sup.width, sup.feat_dim, sup.pools, sup.stem_width) == (48, 1024, "1,2", 16)
    for name in ("simclr", "moco", "byol"):
        sim = model(f"method.name={name}")
        assert (sim.width, sim.feat_dim, sim.pools, sim.stem_width) == (48, 1024, "1,3", 16)
    assert model("method.name=simclr", "model.stem_width=0").stem_width == 0
    built = build_method(apply_overrides(Config(), ["method.name=supcon"]), in_channels=1)
    widths = [m.out_channels for m in built.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [16, 48, 96, 192, 1024] and built.feat_dim == 1024  # the learned stem first
    own = model("method.name=supcon", "model.width=8")
    assert (own.width, own.feat_dim, own.pools, own.stem_width) == (8, 256, "1,2", 16)
    both = model("method.name=supcon", "model.width=8", "model.feat_dim=64")
    assert (both.width, both.feat_dim) == (8, 64)
    resnet = model("method.name=supcon", "model.backbone=resnet18")
    assert resnet.width is None and resnet.feat_dim is None and resnet.pools is None

    legacy = config_to_dict(apply_overrides(Config(), ["method.name=supcon", "model.width=16"]))
    legacy["model"]["pools"] = "1,2"
    assert legacy["model"]["feat_dim"] is None  # as run directories stored it before
    rebuilt = config_from_run(legacy).model
    assert (rebuilt.width, rebuilt.feat_dim) == (16, 512)
    assert with_model_defaults(config_from_run(legacy)).model.feat_dim == 512


def test_proj_last_bn_default_per_method_and_in_saved_runs() -> None:
    """``model.proj_last_bn`` None resolves to the method's default (on for BYOL, off for the
    others, on any backbone); a value the user sets wins; and a saved BYOL run whose config has
    the key null or missing (written before the default) rebuilds its head without the BN."""
    from contrastlab.config import config_from_run, config_to_dict
    from contrastlab.methods import PROJ_LAST_BN, with_method_defaults

    def last_bn(*sets: str) -> bool | None:
        return with_method_defaults(apply_overrides(Config(), list(sets))).model.proj_last_bn

    assert Config().model.proj_last_bn is None
    for name in ("simclr", "moco", "supcon", "byol"):
        assert last_bn(f"method.name={name}") is (name == "byol") is PROJ_LAST_BN.get(name, False)
    assert last_bn("method.name=byol", "model.backbone=resnet18") is True
    assert last_bn("method.name=byol", "model.proj_last_bn=false") is False
    assert last_bn("method.name=simclr", "model.proj_last_bn=true") is True

    old = config_to_dict(apply_overrides(Config(), ["method.name=byol"]))
    assert old["model"]["proj_last_bn"] is None
    assert config_from_run(old).model.proj_last_bn is False
    del old["model"]["proj_last_bn"]
    assert config_from_run(old).model.proj_last_bn is False
    built = build_method(config_from_run(old), in_channels=1)
    assert isinstance(built.projector.net[-1], torch.nn.Linear)


def test_learning_rate_defaults_per_method() -> None:
    """optim.lr None resolves to the method's AdamW rate (1.2e-2 for SupCon, 4e-3 otherwise), a
    rate the user sets wins, and the trainer's optimiser gets the resolved rate."""
    from contrastlab.engine.trainer import _build_optimizer
    from contrastlab.methods import with_method_defaults

    def lr(*sets: str) -> float | None:
        return with_method_defaults(apply_overrides(Config(), list(sets))).optim.lr

    assert Config().optim.lr is None
    assert lr("method.name=supcon") == 1.2e-2
    assert lr("method.name=simclr") == lr("method.name=moco") == lr("method.name=byol") == 4e-3
    assert lr("method.name=supcon", "optim.lr=0.05") == 0.05
    resolved = with_method_defaults(apply_overrides(Config(), ["method.name=supcon"]))
    assert resolved.model.width == 48  # the model's defaults still apply
    cfg = apply_overrides(Config(), ["method.name=supcon", "model.width=8"])
    opt = _build_optimizer(cfg, build_method(cfg, in_channels=1))
    assert {g["lr"] for g in opt.param_groups} == {1.2e-2}


def test_warmup_defaults_per_method() -> None:
    """optim.warmup_epochs None resolves to two epochs for BYOL and half an epoch otherwise; a
    value the user sets wins (zero too); a negative one is refused, naming the key."""
    from contrastlab.engine.views import with_stored_warmup
    from contrastlab.methods import with_method_defaults

    def warmup(*sets: str) -> float | None:
        return with_method_defaults(apply_overrides(Config(), list(sets))).optim.warmup_epochs

    assert Config().optim.warmup_epochs is None
    assert warmup("method.name=byol") == 2.0
    assert warmup("method.name=simclr") == warmup("method.name=moco") == 0.5
    assert warmup("method.name=supcon") == 0.5
    assert warmup("method.name=byol", "optim.warmup_epochs=0") == 0.0
    assert warmup("method.name=simclr", "optim.warmup_epochs=3") == 3.0
    with pytest.raises(ConfigError, match="optim.warmup_epochs"):
        warmup("method.name=simclr", "optim.warmup_epochs=-1")
    byol = apply_overrides(Config(), ["method.name=byol"])
    assert with_stored_warmup(byol, {"optim": {"warmup_epochs": 0.5}}).optim.warmup_epochs == 0.5
    assert with_stored_warmup(byol, {"method": {"name": "byol"}}) is byol


def test_byol_predictor_lr_scale_gives_the_predictor_its_own_rate() -> None:
    """method.predictor_lr_scale multiplies the predictor's learning rate (and only its), keeps
    the weight-decay exclusions, survives the schedule, and is refused outside BYOL or at <= 0."""
    from contrastlab.engine.trainer import _build_optimizer, _set_lr

    cfg = _cfg("byol", **{"method.predictor_lr_scale": "10", "optim.lr": "0.002"})
    method = build_method(cfg, in_channels=1)
    opt = _build_optimizer(cfg, method)
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert set(group_of) == {id(p) for p in trainable}
    predictor = {id(p) for p in method.predictor.parameters()}
    assert [group_of[i]["lr"] for i in predictor] == pytest.approx([0.02] * len(predictor))
    assert {g["lr"] for i, g in group_of.items() if i not in predictor} == {0.002}
    assert opt.param_groups[0]["lr"] == 0.002  # the group whose lr is logged
    for name, p in method.predictor.named_parameters():
        assert group_of[id(p)]["weight_decay"] == (0.0 if p.ndim <= 1 else 1e-4), name
    assert _set_lr(opt, 0.5) == pytest.approx(0.001)
    assert [group_of[i]["lr"] for i in predictor] == pytest.approx([0.01] * len(predictor))
    plain = _build_optimizer(_cfg("byol"), build_method(_cfg("byol"), in_channels=1))
    assert len(plain.param_groups) == 2  # scale 1: no extra groups
    with pytest.raises(ConfigError, match="predictor_lr_scale applies to byol"):
        build_method(_cfg("simclr", **{"method.predictor_lr_scale": "2"}), in_channels=1)
    with pytest.raises(ConfigError, match="predictor_lr_scale must be > 0"):
        build_method(_cfg("byol", **{"method.predictor_lr_scale": "0"}), in_channels=1)


def test_cosine_temperature_period_is_the_runs_length_in_steps() -> None:
    """The trainer passes optimiser steps, so the cosine schedule's default period is the run's
    epochs × steps per epoch (τ_max at step 0, τ_min at the end); on a wall-clock budget
    without epochs the period must be given."""
    from contrastlab.methods import build_temperature

    cfg = _cfg("simclr", **{"loss.policy": "cosine", "train.epochs": "4"})
    tau = build_temperature(cfg, steps_per_epoch=100)
    assert tau.value(0) == pytest.approx(1.0) and tau.value(400) == pytest.approx(0.1)
    assert tau.value(200) == pytest.approx(0.55)
    assert build_temperature(cfg).value(4) == pytest.approx(0.1)  # a caller counting epochs
    timed = _cfg("simclr", **{"loss.policy": "cosine", "train.max_time": "5"})
    with pytest.raises(ConfigError, match="loss.cosine_period"):
        build_temperature(timed, steps_per_epoch=100)
    given = _cfg("simclr", **{"loss.policy": "cosine", "train.max_time": "5",
                              "loss.cosine_period": "50"})
    assert build_temperature(given, steps_per_epoch=100).value(50) == pytest.approx(0.1)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bad_views_are_refused_naming_the_problem(name: str, batch) -> None:
    images, labels, aug = batch
    method = build_method(_cfg(name), in_channels=1)
    v = aug(images[:8], generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"views must share one batch size B, got \[8, 7\]"):
        method.training_step([v[0], v[1][:7]], labels[:8], step=0, progress=0.0)
    with pytest.raises(ValueError, match="a batch of at least 2 images"):
        method.training_step([x[:1] for x in v], labels[:1], step=0, progress=0.0)
    with pytest.raises(ValueError, match=r"labels must be \(8,\), got \(7,\)"):
        method.training_step(v, labels[:7], step=0, progress=0.0)
    if name in ("moco", "byol"):  # their losses use two views: a third is refused, not dropped
        with pytest.raises(ValueError, match=f"{name} uses 2 views, got 3"):
            method.training_step([*v, v[0]], labels[:8], step=0, progress=0.0)


def test_temperature_default_per_method_is_stored_and_old_runs_keep_theirs() -> None:
    """``loss.temperature`` None resolves to the method's τ (``DEFAULT_TEMPERATURE``: MoCo v2
    0.1 since the thirty-first round) for the policies that read it, so config.json names it; a
    value the user sets wins; policies that take τ_min / τ_max keep None. A saved run whose τ is
    null used the default of its day: 0.2 for MoCo (as for SimCLR), 0.1 for SupCon."""
    from contrastlab.config import config_from_run, config_to_dict
    from contrastlab.methods import DEFAULT_TEMPERATURE, with_method_defaults

    def tau(*sets: str) -> float | None:
        return with_method_defaults(apply_overrides(Config(), list(sets))).loss.temperature

    assert Config().loss.temperature is None
    for name in ("simclr", "moco", "supcon", "byol"):
        assert tau(f"method.name={name}") == DEFAULT_TEMPERATURE[name]
    assert DEFAULT_TEMPERATURE["moco"] == 0.1
    assert tau("method.name=moco", "loss.policy=learnable") == 0.1
    assert tau("method.name=moco", "loss.temperature=0.2") == 0.2
    assert tau("method.name=moco", "loss.policy=dystress") is None
    moco = with_method_defaults(apply_overrides(Config(), ["method.name=moco"]))
    assert isinstance(built := build_method(moco, in_channels=1), MoCo)
    assert built.tau_policy.value() == pytest.approx(0.1)

    for name, old_tau in (("moco", 0.2), ("simclr", 0.2), ("supcon", 0.1)):
        old = config_to_dict(apply_overrides(Config(), [f"method.name={name}"]))
        assert old["loss"]["temperature"] is None
        assert config_from_run(old).loss.temperature == old_tau
    stored = config_to_dict(with_method_defaults(apply_overrides(Config(), ["method.name=moco"])))
    assert config_from_run(stored).loss.temperature == 0.1
    cosine = config_to_dict(apply_overrides(Config(), ["method.name=moco", "loss.policy=cosine"]))
    assert config_from_run(cosine).loss.temperature is None
