"""MoCo v2's shuffle BN on one device (``method.bn_groups``): BatchNorm statistics over
sub-batches of each view, the keys' sub-batches drawn from a random permutation."""

from __future__ import annotations

import pytest
import torch

from contrastlab.config import Config, ConfigError, apply_overrides
from contrastlab.data import augment_for, load_dataset
from contrastlab.methods import MoCo, build_method
from contrastlab.ops import normalize


def _cfg(*sets: str) -> Config:
    base = [
        "method.name=moco",
        "model.width=8",
        "model.proj_hidden_dim=32",
        "model.proj_dim=16",
        "method.queue_size=128",
    ]
    return apply_overrides(Config(), [*base, *sets])


@pytest.fixture(scope="module")
def views() -> tuple[list[torch.Tensor], torch.Tensor]:
    ds = load_dataset("fashion-mnist", "train")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:32]
    aug = augment_for(ds, views=2)
    return aug(ds.images[idx], generator=torch.Generator().manual_seed(1)), ds.labels[idx]


def _centre(x: torch.Tensor) -> torch.Tensor:
    """A stand-in for BatchNorm: each row minus the mean of the rows it is called with."""
    return x - x.mean(0, keepdim=True)


@pytest.mark.parametrize("shuffle", [False, True])
def test_groups_stay_within_a_view_and_rows_come_back_in_order(shuffle: bool) -> None:
    method = build_method(_cfg("method.bn_groups=4", "data.batch_size=8"), in_channels=1)
    b, n_views, g = 8, 2, 4
    x = torch.randn(n_views * b, 5, dtype=torch.float64)
    torch.manual_seed(3)
    out = method._in_groups(_centre, x, n_views, shuffle=shuffle)
    group_mean = x - out  # row i's offset is the mean of the group it was normalised with
    for i in range(n_views * b):
        mates = [j for j in range(n_views * b) if torch.allclose(group_mean[j], group_mean[i])]
        assert len(mates) == b // g, f"row {i} was normalised in a group of {len(mates)} rows"
        assert {j // b for j in mates} == {i // b}, f"row {i}'s group spans views"
        assert torch.allclose(x[mates].mean(0), group_mean[i]), f"row {i}: not its group's mean"
    contiguous = [list(range(s, s + b // g)) for s in range(0, n_views * b, b // g)]
    groups = {
        tuple(j for j in range(n_views * b) if torch.allclose(group_mean[j], group_mean[i]))
        for i in range(n_views * b)
    }
    if shuffle:  # 8!/(2!^4 · 4!) = 105 ways to pair 8 rows: contiguous pairs in both views
        assert groups != {tuple(c) for c in contiguous}  # has probability 1/105² here (seed 3)
    else:
        assert groups == {tuple(c) for c in contiguous}


def test_evaluation_mode_is_one_call() -> None:
    method = build_method(_cfg("method.bn_groups=4", "data.batch_size=8"), in_channels=1).eval()
    x = torch.randn(8, 5, dtype=torch.float64)
    assert torch.allclose(method._in_groups(_centre, x, 1, shuffle=True), _centre(x))


def test_queries_and_keys_use_sub_batch_statistics(views) -> None:
    """The symmetric step's query embeddings equal the encoder run on each view's halves; the
    enqueued keys differ from whole-batch keys (other statistics); in eval mode (running
    statistics) the two compute the same keys."""
    v, labels = views
    torch.manual_seed(0)
    grouped = build_method(
        _cfg("method.bn_groups=2", "method.symmetric=true", "data.batch_size=32"), in_channels=1
    )
    assert isinstance(grouped, MoCo) and grouped.bn_groups == 2
    whole = build_method(_cfg("method.symmetric=true"), in_channels=1)
    whole.load_state_dict(grouped.state_dict())
    with torch.no_grad():
        x = torch.cat(v)
        by_halves = torch.cat([whole.head(whole.backbone(part)) for part in x.split(16)])
        emb = grouped.training_step(v, labels, step=0, progress=0.0).embeddings
        assert emb is not None
        expected = normalize(by_halves.float()).reshape(2, 32, -1).transpose(0, 1)
        torch.testing.assert_close(emb, expected)
        whole.training_step(v, labels, step=0, progress=0.0)
        assert grouped._pending is not None and whole._pending is not None
        k_grouped, k_whole = grouped._pending[0], whole._pending[0]
        assert k_grouped.shape == k_whole.shape == (32, 16)
        assert not torch.allclose(k_grouped, k_whole, atol=1e-3)
        whole.load_state_dict(grouped.state_dict())  # the grouped step updated BN twice
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
        (("method.bn_groups=3",), r"data.batch_size \(256\) must be a multiple"),
    ],
)
def test_bad_bn_groups_are_refused(sets: tuple[str, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method(_cfg(*sets), in_channels=1)
