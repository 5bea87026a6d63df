"""Projection and prediction heads (MLPs applied to backbone features).

* SimCLR (Chen et al. 2020): Linear → BN → ReLU → Linear to 128-d (SPEC §1; the paper's CIFAR head
  has BN on the hidden layer).
* MoCo v2 (Chen et al. 2020, "Improved Baselines"): Linear(feat, feat) → ReLU → Linear to 128-d,
  without BN (``moco_v2_head``). ``contrastlab.methods.build_method`` gives MoCo the same head
  as SimCLR instead, with BN on the hidden layer, so that the methods differ only in their loss.
* BYOL (Grill et al. 2020): projector and predictor are both Linear 4096 → BN → ReLU → Linear 256
  (SPEC §7); the predictor sits on the online branch only.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "ProjectionHead",
    "byol_predictor",
    "byol_projector",
    "moco_v2_head",
    "simclr_head",
]


class ProjectionHead(nn.Module):
    """MLP head: ``num_layers`` linear layers, hidden ones followed by (BN →) ReLU.

    Args:
        in_dim: input feature size F.
        hidden_dim: width of the hidden layers.
        out_dim: output embedding size D.
        num_layers: number of linear layers (≥ 1; 1 is a single linear map).
        batch_norm: BatchNorm1d after every hidden linear layer (those layers then have no bias).
        last_bn: affine-free BatchNorm1d on the output (SimCLR v2 / MoCo v3 style).

    Shapes: ``forward`` (B, in_dim) → (B, out_dim). The output is not normalised; losses normalise.

    Raises:
        ValueError: if a size is < 1 or ``num_layers`` < 1; on a forward input that is not
            (B, in_dim).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
    ) -> None:
        super().__init__()
        for arg, val in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if val < 1:
                raise ValueError(f"{arg} must be >= 1, got {val}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim = in_dim, out_dim
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_dim) → (B, out_dim)."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape (B, {self.in_dim}), got {tuple(x.shape)}")
        out: Tensor = self.net(x)
        return out


def simclr_head(in_dim: int, hidden_dim: int | None = None, out_dim: int = 128) -> ProjectionHead:
    """SimCLR head: Linear(in, hidden=in) → BN → ReLU → Linear(hidden, 128)."""
    return ProjectionHead(in_dim, hidden_dim or in_dim, out_dim, num_layers=2, batch_norm=True)


def moco_v2_head(in_dim: int, hidden_dim: int | None = None, out_dim: int = 128) -> ProjectionHead:
    """MoCo v2 head: Linear(in, hidden=in) → ReLU → Linear(hidden, 128), no BN."""
    return ProjectionHead(in_dim, hidden_dim or in_dim, out_dim, num_layers=2, batch_norm=False)


def byol_projector(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> ProjectionHead:
    """BYOL projector: Linear(in, 4096) → BN → ReLU → Linear(4096, 256)."""
    return ProjectionHead(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)


def byol_predictor(in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256) -> ProjectionHead:
    """BYOL predictor: Linear(256, 4096) → BN → ReLU → Linear(4096, 256)."""
    return ProjectionHead(in_dim, hidden_dim, out_dim, num_layers=2, batch_norm=True)
