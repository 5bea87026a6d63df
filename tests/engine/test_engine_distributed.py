"""Distributed helpers: single-process fallbacks, the seeded per-rank sampler, and a 2-process gloo
check that gather_with_grad gives the gradients of one process on the concatenated batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.engine.distributed import (
    gather_with_grad,
    get_rank,
    get_world_size,
    is_main_process,
    per_rank_indices,
)

WORLD, B, D_IN, D = 2, 4, 5, 3


def test_single_process_fallbacks() -> None:
    assert get_rank() == 0 and get_world_size() == 1 and is_main_process()
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_per_rank_indices_disjoint_and_deterministic() -> None:
    parts = [per_rank_indices(11, r, 3, epoch=2, seed=5) for r in range(3)]
    assert all(len(p) == 3 for p in parts)
    flat = torch.cat(parts)
    assert len(set(flat.tolist())) == 9
    assert torch.equal(parts[1], per_rank_indices(11, 1, 3, epoch=2, seed=5))
    assert not torch.equal(parts[0], per_rank_indices(11, 0, 3, epoch=3, seed=5))
    assert per_rank_indices(6, 1, 2, 0, shuffle=False).tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="rank"):
        per_rank_indices(10, 2, 2, 0)


def _loss(z_local: Tensor, z_all: Tensor, offset: int) -> Tensor:
    """InfoNCE-like: each local row's positive is its own copy inside the gathered batch."""
    logits = F.normalize(z_local, dim=1) @ F.normalize(z_all, dim=1).T / 0.5
    target = torch.arange(z_local.shape[0]) + offset
    return F.cross_entropy(logits, target)


def _worker(rank: int, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)  # same model and data on every rank
        model = nn.Linear(D_IN, D)
        x = torch.randn(WORLD * B, D_IN)
        # Reference: one process, the mean of the per-rank losses on the concatenated batch.
        ref_model = nn.Linear(D_IN, D)
        ref_model.load_state_dict(model.state_dict())
        z = ref_model(x)
        ref = torch.stack([_loss(z[r * B : (r + 1) * B], z, r * B) for r in range(WORLD)]).mean()
        ref.backward()
        # Distributed: local slice, gathered with gradient, DDP-style gradient averaging.
        z_local = model(x[rank * B : (rank + 1) * B])
        z_all = gather_with_grad(z_local)
        assert z_all.shape == (WORLD * B, D)
        torch.testing.assert_close(z_all, z.detach())
        loss = _loss(z_local, z_all, rank * B)
        loss.backward()
        for p_dist, p_ref in zip(model.parameters(), ref_model.parameters(), strict=True):
            assert p_dist.grad is not None and p_ref.grad is not None
            g = p_dist.grad.clone()
            dist.all_reduce(g)
            torch.testing.assert_close(g / WORLD, p_ref.grad)
        assert get_rank() == rank and get_world_size() == WORLD
        assert is_main_process() == (rank == 0)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_gather_with_grad_two_gloo_processes() -> None:
    mp.spawn(_worker, args=(_free_port(),), nprocs=WORLD, join=True)
