"""The correlation-attention block: shapes, the rank-one fast path against the general path and
against a per-head reference written the slow, obvious way."""

from __future__ import annotations

import math

import pytest
import torch

from recbench.models.attention import CorrelationAttention, CorrelationHead


def reference_attention(block: CorrelationAttention, m: torch.Tensor) -> torch.Tensor:
    """The paper's equations, one sample and one head at a time, no fused kernels."""
    outs = []
    for b in range(m.shape[0]):
        heads = []
        for h in range(block.n_heads):
            q = torch.sigmoid(m[b] @ block.w_q[h])
            k = torch.sigmoid(m[b] @ block.w_k[h])
            v = torch.sigmoid(m[b] @ block.w_v[h])
            a = torch.softmax(q @ k.T / math.sqrt(block.d_k), dim=-1)
            heads.append(a @ v)
        outs.append(torch.cat(heads, dim=-1) @ block.w_o.weight.T)
    return torch.stack(outs)


@pytest.fixture
def hz() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 12, generator=g), torch.randn(5, 12, generator=g)


@pytest.mark.parametrize(("heads", "d_k", "d_v"), [(1, 8, 8), (4, 16, 16), (3, 5, 7)])
def test_shapes_and_paths_agree(hz: tuple[torch.Tensor, torch.Tensor], heads: int, d_k: int, d_v: int) -> None:
    torch.manual_seed(0)
    h, z = hz
    block = CorrelationAttention(12, n_heads=heads, d_k=d_k, d_v=d_v)
    assert block.w_q.shape == (heads, 12, d_k)
    assert block.w_v.shape == (heads, 12, d_v)
    fast = block(h, z)
    assert fast.shape == (5, 12, 12)
    m = h.unsqueeze(2) * z.unsqueeze(1)
    torch.testing.assert_close(fast, block.forward_matrix(m), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, reference_attention(block, m), atol=1e-5, rtol=1e-5)


def test_rank_one_switch_gives_same_output_and_gradients(
    hz: tuple[torch.Tensor, torch.Tensor],
) -> None:
    torch.manual_seed(0)
    fast = CorrelationAttention(12)
    slow = CorrelationAttention(12, rank_one=False)
    slow.load_state_dict(fast.state_dict())
    h, z = hz
    out_f, out_s = fast(h, z), slow(h, z)
    torch.testing.assert_close(out_f, out_s, atol=1e-5, rtol=1e-5)
    out_f.square().sum().backward()
    out_s.square().sum().backward()
    torch.testing.assert_close(fast.w_qkv.grad, slow.w_qkv.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.w_o.weight.grad, slow.w_o.weight.grad, atol=1e-4, rtol=1e-4)


def test_general_matrix_matches_reference() -> None:
    torch.manual_seed(1)
    block = CorrelationAttention(8, n_heads=2, d_k=4, d_v=4)
    m = torch.randn(3, 8, 8)
    torch.testing.assert_close(block.forward_matrix(m), reference_attention(block, m), atol=1e-5, rtol=1e-5)


def test_head_gives_one_logit_per_row() -> None:
    torch.manual_seed(0)
    head = CorrelationHead(6, hidden=(16, 4))
    out = head(torch.randn(7, 6, 6))
    assert out.shape == (7,)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
    assert n_bn == 2
    head.eval()
    assert head(torch.randn(1, 6, 6)).shape == (1,)


def test_diagonal_fast_path_matches_general() -> None:
    torch.manual_seed(2)
    block = CorrelationAttention(8, n_heads=2, d_k=4, d_v=4)
    s = torch.randn(3, 8)
    torch.testing.assert_close(
        block.forward_diagonal(s), block.forward_matrix(torch.diag_embed(s)), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("rank_one", [True, False])
def test_bf16_autocast_path_is_close_to_float32(hz: tuple[torch.Tensor, torch.Tensor], rank_one: bool) -> None:
    """Under CPU bf16 autocast the block takes its batched-matmul path (exp-normalised
    attention); it must agree with the float32 path to bf16 accuracy, with gradients."""
    torch.manual_seed(0)
    block = CorrelationAttention(12, n_heads=2, d_k=8, d_v=8, rank_one=rank_one)
    h, z = (t.clone().requires_grad_() for t in hz)
    ref = block(h, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = block(h, z)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=3e-2, rtol=3e-2)
    low.float().sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(block.w_qkv.grad).all()
