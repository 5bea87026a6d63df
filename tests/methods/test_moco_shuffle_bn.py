"""MoCo v2's shuffle BN on one device (``method.bn_groups``): BatchNorm statistics over
sub-batches of each view, the keys' sub-batches drawn from a random permutation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from contrastlab.config import Config, ConfigError, apply_overrides
from contrastlab.data import augment_for, load_dataset
from contrastlab.methods import MoCo, build_method
from contrastlab.nn import SplitBatchNorm1d
from contrastlab.ops import normalize


def _cfg(*sets: str) -> Config:
    base = [
        "method.name=moco",
        "model.width=8",
        "model.proj_hidden_dim=32",
        "model.proj_dim=16",
        "method.queue_size=128",
        "data.batch_size=32",  # the views below
    ]
    return apply_overrides(Config(), [*base, *sets])


@pytest.fixture(scope="module")
def views() -> tuple[list[torch.Tensor], torch.Tensor]:
    ds = load_dataset("fashion-mnist", "train")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:32]
    aug = augment_for(ds, views=2)
    return aug(ds.images[idx], generator=torch.Generator().manual_seed(1)), ds.labels[idx]


class _Recorder(SplitBatchNorm1d):
    """Records the rows it is called with and its group size; returns twice its input."""

    def forward(self, input: Tensor) -> Tensor:
        self.seen = input.clone()
        self.seen_group = self.group_size
        return 2 * input


@pytest.mark.parametrize("n_views", [1, 2])
@pytest.mark.parametrize("shuffle", [False, True])
def test_groups_stay_within_a_view_and_rows_come_back_in_order(n_views: int, shuffle: bool) -> None:
    method = build_method(_cfg("method.bn_groups=4", "data.batch_size=8"), in_channels=1)
    assert isinstance(method, MoCo)
    method.recorder = _Recorder(1)  # a BN layer of the method, so the groups reach it
    b = 8
    x = torch.arange(n_views * b, dtype=torch.float64)[:, None]  # row i holds i
    torch.manual_seed(3)
    out = method._in_groups(method.recorder, x, n_views, shuffle=shuffle)
    torch.testing.assert_close(out, 2 * x)  # in the input's order
    assert method.recorder.seen_group == 2  # B / G rows per group
    seen = method.recorder.seen[:, 0].long()
    for v in range(n_views):  # each view's rows stay in that view's block
        assert sorted(seen[v * b : (v + 1) * b].tolist()) == list(range(v * b, (v + 1) * b))
    assert torch.equal(seen, torch.arange(n_views * b)) != shuffle  # P(identity) = 1/8! per view
    assert method.recorder.group_size is None  # reset after the call


def test_evaluation_mode_takes_whole_batch_statistics() -> None:
    method = build_method(_cfg("method.bn_groups=4", "data.batch_size=8"), in_channels=1)
    assert isinstance(method, MoCo)
    method.recorder = _Recorder(1)
    method.eval()
    x = torch.arange(8, dtype=torch.float64)[:, None]
    method._in_groups(method.recorder, x, 1, shuffle=True)
    assert torch.equal(method.recorder.seen, x) and method.recorder.seen_group is None


def test_queries_and_keys_use_sub_batch_statistics(views) -> None:
    """The symmetric step's query embeddings equal a plain-BN encoder run on each view's halves;
    the enqueued keys differ from whole-batch keys (other statistics); in eval mode (running
    statistics) the two compute the same keys."""
    v, labels = views
    torch.manual_seed(0)
    grouped = build_method(
        _cfg("method.bn_groups=2", "method.symmetric=true", "data.batch_size=32"), in_channels=1
    )
    assert isinstance(grouped, MoCo) and grouped.bn_groups == 2
    whole = build_method(_cfg("method.symmetric=true"), in_channels=1)
    assert isinstance(whole, MoCo)
    whole.load_state_dict(grouped.state_dict())
    with torch.no_grad():
        by_halves = torch.cat([whole.head(whole.backbone(part)) for part in torch.cat(v).split(16)])
        emb = grouped.training_step(v, labels, step=0, progress=0.0).embeddings
        assert emb is not None
        expected = normalize(by_halves.float()).reshape(2, 32, -1).transpose(0, 1)
        torch.testing.assert_close(emb, expected, rtol=1e-4, atol=1e-5)
        whole.load_state_dict(grouped.state_dict())  # the same EMA step and BN statistics
        whole.training_step(v, labels, step=0, progress=0.0)
        assert grouped._pending is not None and whole._pending is not None
        k_grouped, k_whole = grouped._pending[0], whole._pending[0]
        assert k_grouped.shape == k_whole.shape == (32, 16)
        assert not torch.allclose(k_grouped, k_whole, atol=1e-3)
        whole.load_state_dict(grouped.state_dict())
        grouped.eval(), whole.eval()
        torch.testing.assert_close(grouped._keys(v[1], 1), whole._keys(v[1], 1))


def test_a_step_trains_the_query_encoder_only(views) -> None:
    v, labels = views
    torch.manual_seed(0)
    method = build_method(_cfg("method.bn_groups=4", "data.batch_size=32"), in_channels=1)
    out = method.training_step(v, labels, step=0, progress=0.0)
    out.loss.backward()
    for name, p in method.named_parameters():
        assert (p.grad is None) == name.startswith("key_"), name


@pytest.mark.parametrize(
    ("sets", "match"),
    [
        (("method.name=simclr", "method.bn_groups=2"), "applies to moco"),
        (("method.bn_groups=0",), "must be >= 1"),
        (("method.bn_groups=3",), r"data.batch_size \(32\) must be a multiple"),
        (("method.bn_groups=32",), "at least 2 images per group"),
        (("method.queue_size=100",), "method.queue_size .100. must be a positive multiple"),
        (("method.moco_momentum=1.0",), r"method.moco_momentum must be in \[0, 1\)"),
        (("data.views=3",), "moco uses 2 views: data.views must be 2"),
        (("method.bn_groups=2", "model.mirror=true"), "model.mirror"),
    ],
)
def test_bad_bn_groups_are_refused(sets: tuple[str, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method(_cfg(*sets), in_channels=1)


def test_a_refused_step_leaves_the_key_encoder_alone(views) -> None:
    """The checks run before the EMA moves the key encoder: a rejected call changes nothing."""
    v, labels = views
    method = build_method(_cfg("method.bn_groups=4", "method.queue_size=96"), in_channels=1)
    before = {k: t.clone() for k, t in method.key_backbone.state_dict().items()}
    with pytest.raises(ValueError, match="multiple of bn_groups"):
        method.training_step([x[:6] for x in v], labels[:6], step=0, progress=0.0)
    with pytest.raises(ValueError, match="at least 2 images per group"):
        method.training_step([x[:4] for x in v], labels[:4], step=0, progress=0.0)
    with pytest.raises(ValueError, match="moco uses 2 views, got 3"):
        method.training_step([*v, v[0]], labels, step=0, progress=0.0)
    after = method.key_backbone.state_dict()
    assert all(torch.equal(t, after[k]) for k, t in before.items())
