"""kNN, linear probe, feature extraction and the frozen-backbone self-check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from contrastlab.eval import (
    KNNMonitor,
    bf16_is_fast,
    extract_features,
    knn_accuracy,
    knn_classify,
    knn_scores,
    linear_probe,
    linear_probe_on_encoder,
)


def _clusters(n_per: int, c: int, d: int, seed: int, spread: float = 0.1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(
        torch.randn(c, d, generator=torch.Generator().manual_seed(123)), dim=1
    )
    y = torch.arange(c).repeat_interleave(n_per)
    x = centers[y] + spread * torch.randn(len(y), d, generator=g)
    return x, y


def test_knn_separable_clusters() -> None:
    xtr, ytr = _clusters(50, 5, 16, 0)
    xte, yte = _clusters(20, 5, 16, 1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20, chunk=7) == pytest.approx(100.0)
    # chunks that do not divide the queries (one similarity block reused, the last one partial)
    torch.testing.assert_close(
        knn_scores(xtr, ytr, xte, k=20, chunk=7), knn_scores(xtr, ytr, xte, k=20, chunk=1000)
    )


def test_knn_hand_computed_weighted_vote() -> None:
    # Bank: one class-0 point at angle 0, two class-1 points at ±60° (cos = 0.5); query at 0°.
    bank = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, -math.sqrt(3) / 2]])
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[2.0, 0.0]])  # not normalised on purpose
    # t = 0.5: class 0 gets e^{1/0.5} = 7.39; class 1 gets 2 e^{0.5/0.5} = 5.44 → class 0.
    s = knn_scores(bank, labels, q, k=3, t=0.5)
    torch.testing.assert_close(s, torch.tensor([[math.exp(2.0), 2 * math.exp(1.0)]]))
    assert knn_classify(bank, labels, q, k=3, t=0.5).tolist() == [0]
    # t = 5: class 0 gets e^{0.2} = 1.22; class 1 gets 2 e^{0.1} = 2.21 → class 1 wins.
    assert knn_classify(bank, labels, q, k=3, t=5.0).tolist() == [1]
    # k = 1 keeps only the nearest neighbour.
    assert knn_classify(bank, labels, q, k=1, t=5.0).tolist() == [0]
    # k larger than the bank is clipped; num_classes adds empty columns.
    assert knn_scores(bank, labels, q, k=10, t=0.5, num_classes=4).shape == (1, 4)


def test_knn_classify_small_temperature_does_not_overflow() -> None:
    # One class-0 neighbour and two class-1 neighbours, all at cosine 0.95 from the query:
    # class 1 has twice the vote. At t = 0.005 each weight e^{190} overflows float32, so
    # comparing absolute votes would tie at inf and pick class 0.
    c, s = 0.95, math.sqrt(1 - 0.95**2)
    bank = torch.tensor([[c, s, 0.0], [c, 0.0, s], [c, -s, 0.0]])
    labels = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isinf(knn_scores(bank, labels, q, k=3, t=0.005)).all()
    assert knn_classify(bank, labels, q, k=3, t=0.005).tolist() == [1]
    assert knn_accuracy(bank, labels, q, torch.tensor([1]), k=3, t=0.005) == 100.0


def test_knn_argument_errors() -> None:
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"test_feats must be \(M, 3\)"):
        knn_classify(x, y, torch.randn(2, 4))
    with pytest.raises(ValueError, match="train_labels"):
        knn_classify(x, y[:3], x)
    with pytest.raises(ValueError, match="t must be"):
        knn_classify(x, y, x, t=0.0)


def test_linear_probe_separable() -> None:
    xtr, ytr = _clusters(100, 4, 8, 2, spread=0.05)
    xte, yte = _clusters(50, 4, 8, 3, spread=0.05)
    xtr, xte = 50 * xtr + 7, 50 * xte + 7  # standardisation must undo the scale/offset
    res = linear_probe(xtr, ytr, xte, yte, epochs=20, lr=0.05, batch_size=64, seed=0)
    assert res.train_top1 == pytest.approx(100.0)
    assert res.test_top1 == pytest.approx(100.0)
    assert (res.predict(xte) == yte).all()


def test_linear_probe_bf16_steps_match_fp32() -> None:
    # Overlapping clusters (accuracy well below 100%), so a probe that trained differently shows.
    xtr, ytr = _clusters(400, 5, 64, 5, spread=0.35)
    xte, yte = _clusters(200, 5, 64, 6, spread=0.35)
    kw = dict(epochs=10, lr=0.01, batch_size=128, seed=0)
    full = linear_probe(xtr, ytr, xte, yte, amp=False, **kw)  # type: ignore[arg-type]
    low = linear_probe(xtr, ytr, xte, yte, amp=True, **kw)  # type: ignore[arg-type]
    assert 60.0 < full.test_top1 < 99.0
    assert abs(low.test_top1 - full.test_top1) <= 1.0
    assert abs(low.train_loss - full.train_loss) <= 0.02 * full.train_loss
    assert low.classifier.weight.dtype == torch.float32
    # bf16 steps really ran: the weights differ from the fp32 run's, slightly
    diff = (low.classifier.weight - full.classifier.weight).abs().max().item()
    assert 0.0 < diff < 0.1 * full.classifier.weight.abs().max().item()


def _autograd_probe(
    xtr: Tensor, ytr: Tensor, epochs: int, lr: float, wd: float, bs: int, seed: int, c: int
) -> tuple[Tensor, Tensor, float]:
    """The probe's protocol written plainly, in float64: standardise, init from the seeded
    generator, then per epoch a permutation from it, minibatches of ``bs``, autograd through
    ``F.cross_entropy``, AdamW (PyTorch's loop implementation) with a cosine decay per step."""
    x = xtr.double()
    mean = x.mean(0)
    x = (x - mean) / (x - mean).pow(2).mean(0).sqrt()
    gen = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    w = torch.empty(c, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d), generator=gen)
    w, b = w.double().requires_grad_(), torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=wd, foreach=False)
    steps = math.ceil(x.shape[0] / bs)
    total, step, loss_sum = epochs * steps, 0, 0.0
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        loss_sum = 0.0
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs]
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = torch.nn.functional.cross_entropy(x[idx] @ w.T + b, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            step += 1
    return w.detach(), b.detach(), loss_sum / x.shape[0]


def test_linear_probe_matches_autograd_reference() -> None:
    # The probe against its protocol written out independently and run in float64: the same
    # standardisation, initialisation, minibatch order, AdamW and cosine schedule per step.
    xtr, ytr = _clusters(60, 4, 12, 7, spread=0.6)
    xtr = 3 * xtr + 1
    kw = dict(epochs=3, lr=0.02, weight_decay=0.01, batch_size=50, seed=4)
    res = linear_probe(xtr, ytr, xtr, ytr, amp=False, **kw)  # type: ignore[arg-type]
    w, b, loss = _autograd_probe(xtr, ytr, 3, 0.02, 0.01, 50, 4, c=4)
    assert 40.0 < res.train_top1 < 100.0  # not a trivially separable problem
    torch.testing.assert_close(res.classifier.weight.double(), w, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.classifier.bias.double(), b, rtol=1e-4, atol=1e-5)
    assert res.train_loss == pytest.approx(loss, rel=1e-5)


def test_linear_probe_deterministic_given_seed() -> None:
    xtr, ytr = _clusters(30, 3, 5, 4, spread=1.0)
    a = linear_probe(xtr, ytr, xtr, ytr, epochs=3, seed=1)
    b = linear_probe(xtr, ytr, xtr, ytr, epochs=3, seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():  # positive weights: brightness (the class signal) survives pooling
            self.conv.weight.copy_(torch.linspace(0.01, 0.2, 36).view(4, 1, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


class _SneakyEncoder(_Encoder):
    """Switches itself to train mode in forward, so BN running stats change."""

    def forward(self, x: Tensor) -> Tensor:
        self.train()
        return super().forward(x)


class _WeightMutatingEncoder(_Encoder):
    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.conv.weight.mul_(1.0001)
        return super().forward(x)


def _images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    img = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    img[y == 1] += 150
    return img, y


def test_linear_probe_on_encoder_passes_and_restores_mode() -> None:
    enc = _Encoder().train()
    tr, ytr = _images(64, 0)
    te, yte = _images(32, 1)
    res = linear_probe_on_encoder(enc, tr, ytr, te, yte, epochs=5, batch_size=16)
    assert res.test_top1 > 90.0
    assert enc.training and enc.bn.training


@pytest.mark.parametrize("cls", [_SneakyEncoder, _WeightMutatingEncoder])
def test_linear_probe_on_encoder_detects_changed_backbone(cls: type[nn.Module]) -> None:
    tr, ytr = _images(16, 0)
    with pytest.raises(RuntimeError, match="changed the frozen encoder"):
        linear_probe_on_encoder(cls(), tr, ytr, tr, ytr, epochs=1)


def test_extract_features_shapes_modes_and_errors() -> None:
    enc = _Encoder().train()
    imgs, _ = _images(10, 0)
    f = extract_features(enc, imgs, batch_size=3, amp=False)
    assert f.shape == (10, 4) and f.dtype == torch.float32
    assert enc.training
    torch.testing.assert_close(f[:3], extract_features(enc, imgs[:3], amp=False))
    with pytest.raises(ValueError, match="uint8"):
        extract_features(enc, imgs.float())
    g = extract_features(lambda x: x.flatten(1)[:, :5], imgs, amp=True)  # any callable
    assert g.shape == (10, 5)
    # bf16 outputs are written into the float32 result as they are
    h = extract_features(lambda x: x.flatten(1)[:, :5].bfloat16(), imgs, batch_size=4)
    assert h.dtype == torch.float32 and torch.equal(h, g.bfloat16().float())
    with pytest.raises(ValueError, match=r"encoder must return \(B, F\) with B=3"):
        extract_features(lambda x: x.flatten(1)[:1], imgs, batch_size=3, amp=False)
    widths = iter([5, 5, 6, 5])
    with pytest.raises(ValueError, match="returned 6 features for images 6.., 5 before"):
        extract_features(lambda x: x.flatten(1)[:, : next(widths)], imgs, batch_size=3, amp=False)


def test_knn_monitor_fixed_subset() -> None:
    tr, ytr = _images(200, 0)
    te, yte = _images(100, 1)
    mon = KNNMonitor(tr, ytr, te, yte, n_train=50, n_test=20, k=5, seed=0)
    assert mon.train_images.shape[0] == 50 and mon.test_images.shape[0] == 20
    enc = _Encoder()
    acc = mon(enc)
    assert 0.0 <= acc <= 100.0
    assert mon(enc) == acc


def test_linear_probe_leaves_the_global_rng_alone() -> None:
    xtr, ytr = _clusters(10, 2, 4, 0)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    linear_probe(xtr, ytr, xtr, ytr, epochs=1)
    assert torch.equal(torch.rand(3), expected)


def test_linear_probe_label_range_errors_name_the_argument() -> None:
    xtr, ytr = _clusters(10, 2, 4, 0)
    with pytest.raises(ValueError, match=r"train_labels must lie in \[0, num_classes=2\)"):
        linear_probe(xtr, ytr + 5, xtr, ytr, epochs=1, num_classes=2)
    with pytest.raises(ValueError, match="test_labels must lie in"):
        linear_probe(xtr, ytr, xtr, ytr - 1, epochs=1)


def test_linear_probe_trains_under_inference_mode() -> None:
    xtr, ytr = _clusters(20, 3, 5, 0)
    with torch.inference_mode():
        res = linear_probe(xtr, ytr, xtr, ytr, epochs=5, batch_size=8, seed=1)
    plain = linear_probe(xtr, ytr, xtr, ytr, epochs=5, batch_size=8, seed=1)
    assert torch.equal(res.classifier.weight, plain.classifier.weight)
    assert res.test_top1 == plain.test_top1 > 90.0


class _BufferMutatingEncoder(_Encoder):
    """Changes a non-persistent buffer, which ``state_dict`` does not hold."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return super().forward(x)


def test_linear_probe_on_encoder_checks_non_persistent_buffers_and_tolerates_nan() -> None:
    tr, ytr = _images(16, 0)
    with pytest.raises(RuntimeError, match=r"changed the frozen encoder.*calls"):
        linear_probe_on_encoder(_BufferMutatingEncoder(), tr, ytr, tr, ytr, epochs=1)
    enc = _Encoder()
    enc.bn.running_var[0] = float("nan")  # a NaN that nothing changes is not a change
    linear_probe_on_encoder(enc, tr, ytr, tr, ytr, epochs=1)


def test_knn_accuracy_of_an_empty_test_set_is_nan() -> None:
    x, y = _clusters(5, 2, 3, 0)
    acc = knn_accuracy(x, y, x[:0], y[:0], k=3)
    assert math.isnan(acc)


def test_bf16_is_fast_needs_the_cpus_own_bf16_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    # oneDNN reports bf16 support on every AVX-512 CPU, where it emulates bf16 (slowly).
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert bf16_is_fast("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert bf16_is_fast("cpu") is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_extract_features_of_no_images_keeps_the_width() -> None:
    imgs, _ = _images(4, 0)
    assert extract_features(_Encoder(), imgs[:0], amp=False).shape == (0, 4)
