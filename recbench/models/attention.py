"""The correlation-attention block and MLP head shared by OPECI and CADNCF.

Given a user factor ``h`` and an item factor ``z`` (both ``R^d``), the correlation matrix is
``M = h zᵀ ∈ R^{d×d}``. :class:`CorrelationAttention` runs multi-head self-attention over the d
rows of M (OPECI, eq. 3; CADNCF is the same block with one head)::

    Q_h = sigmoid(M W^Q_h)   K_h = sigmoid(M W^K_h)   V_h = sigmoid(M W^V_h)
    O_h = softmax(Q_h K_hᵀ / √d_k) V_h
    O   = concat_h(O_h) W^O ∈ R^{d×d}

with ``W^Q_h, W^K_h ∈ R^{d×d_k}``, ``W^V_h ∈ R^{d×d_v}``, ``W^O ∈ R^{H·d_v×d}`` (no biases, as
in the paper's equations). :class:`CorrelationHead` maps ``flatten(O)`` through an MLP with batch
normalisation to one logit.

Two paths compute the same function:

- :meth:`CorrelationAttention.forward` (``h``, ``z``) uses that M has rank one:
  ``M W = h (zᵀ W)``, so the three projections cost one ``d × H(2d_k+d_v)`` vector–matrix
  product and an outer product instead of a ``d×d×H(2d_k+d_v)`` matrix product per sample; the
  attention itself goes through the fused ``scaled_dot_product_attention``.
- :meth:`CorrelationAttention.forward_matrix` (``M``) is the general path for any ``[B, d, d]``
  input (``rank_one=False`` for measurement) and the reference the tests check the fast paths
  against; :meth:`CorrelationAttention.forward_diagonal` is the fast path for a diagonal M
  (``opeci-inner``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CorrelationAttention(nn.Module):
    """Multi-head self-attention over the d rows of a ``d×d`` correlation matrix.

    Parameters are stored fused: ``w_qkv`` is ``[d, H·(2·d_k + d_v)]`` with the columns of
    ``W^Q_1..W^Q_H``, then ``W^K_1..W^K_H``, then ``W^V_1..W^V_H`` (each head's block contiguous),
    so one matrix product serves all three projections of all heads. ``w_q``, ``w_k``, ``w_v``
    give the per-head ``[H, d, d_k]`` views.

    Initialisation: Gaussian ``N(0, 1/d)`` for ``W^Q``, ``W^K``, ``W^V`` (the paper says Gaussian
    and gives no scale; ``1/d`` keeps ``M W`` at the scale of ``M``'s rows so the sigmoids start
    in their linear range), PyTorch's default (Kaiming-uniform) for ``W^O``.

    ``rank_one`` selects what :meth:`forward` does with ``(h, z)``: the rank-one fast path
    (default) or building ``M = h zᵀ`` and calling :meth:`forward_matrix` (for measurement).
    """

    def __init__(
        self,
        d: int,
        n_heads: int = 4,
        d_k: int = 16,
        d_v: int = 16,
        rank_one: bool = True,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if min(d, n_heads, d_k, d_v) < 1:
            raise ValueError("d, n_heads, d_k and d_v must be positive")
        self.d, self.n_heads, self.d_k, self.d_v = d, n_heads, d_k, d_v
        self.rank_one = rank_one
        self.w_qkv = nn.Parameter(torch.empty(d, n_heads * (2 * d_k + d_v)))
        self.w_o = nn.Linear(n_heads * d_v, d, bias=False)
        nn.init.normal_(self.w_qkv, std=init_std if init_std is not None else 1.0 / math.sqrt(d))

    # ------------------------------------------------------------------ per-head views
    @property
    def w_q(self) -> torch.Tensor:
        """``[H, d, d_k]``: ``W^Q_h`` for each head."""
        hk = self.n_heads * self.d_k
        return self.w_qkv[:, :hk].reshape(self.d, self.n_heads, self.d_k).transpose(0, 1)

    @property
    def w_k(self) -> torch.Tensor:
        hk = self.n_heads * self.d_k
        return self.w_qkv[:, hk : 2 * hk].reshape(self.d, self.n_heads, self.d_k).transpose(0, 1)

    @property
    def w_v(self) -> torch.Tensor:
        hk = self.n_heads * self.d_k
        return self.w_qkv[:, 2 * hk :].reshape(self.d, self.n_heads, self.d_v).transpose(0, 1)

    # ------------------------------------------------------------------ shared tail
    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x``: ``[B, d, H·(2d_k+d_v)]`` → Q, K, V as ``[B, H, d, ·]``."""
        b, d, h = x.shape[0], self.d, self.n_heads
        hk = h * self.d_k
        q, k, v = x.split([hk, hk, h * self.d_v], dim=-1)
        q = q.reshape(b, d, h, self.d_k).transpose(1, 2)
        k = k.reshape(b, d, h, self.d_k).transpose(1, 2)
        v = v.reshape(b, d, h, self.d_v).transpose(1, 2)
        return q, k, v

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Q, K, V ``[B, H, d, ·]`` (after the sigmoid) → ``O``: ``[B, d, d]``, or, with
        ``project=False``, ``concat_h(O_h)`` (``[B, d, H·d_v]``, before ``W^O``)."""
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # PyTorch's CPU flash kernel is slow in bf16; batched matmuls are fast there
            # Q, K ∈ (0, 1)^{d_k} after the sigmoid, so the scores lie in (0, √d_k): exp needs no
            # max-subtraction, and the softmax's row sums come out of the same product as
            # O = exp(S) [V, 1], normalising d×d_v outputs instead of the d×d matrix
            b, h, d, dk = q.shape
            scores = torch.baddbmm(
                q.new_empty(b * h, d, d),
                q.reshape(b * h, d, dk),
                k.reshape(b * h, d, dk).transpose(1, 2),
                beta=0.0,
                alpha=1.0 / math.sqrt(self.d_k),
            )
            v1 = torch.cat([v.reshape(b * h, d, -1), v.new_ones(b * h, d, 1)], dim=-1)
            num = torch.bmm(torch.exp(scores), v1)
            o = (num[..., :-1].float() / num[..., -1:].float()).to(v.dtype).view(b, h, d, -1)
        else:
            o = F.scaled_dot_product_attention(q, k, v)  # [B, H, d, d_v], scale 1/√d_k
        b, d = o.shape[0], self.d
        o = o.transpose(1, 2).reshape(b, d, self.n_heads * self.d_v)  # concat over heads
        return self.w_o(o) if project else o

    @staticmethod
    def _low_precision() -> torch.dtype | None:
        """bf16 when running under CPU autocast to bf16 (the fast path's compute dtype)."""
        if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
            return torch.bfloat16
        return None

    def attention_weights(self, m: torch.Tensor) -> torch.Tensor:
        """``softmax(Q_h K_hᵀ / √d_k)`` for a general ``M`` (``[B, d, d]``): ``[B, H, d, d]``,
        each row a distribution over M's rows (slow, explicit: for diagnostics)."""
        q, k, _ = self._heads(torch.sigmoid(m.float() @ self.w_qkv))
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_k), dim=-1)

    # ------------------------------------------------------------------ the paths
    def forward(self, h: torch.Tensor, z: torch.Tensor, project: bool = True) -> torch.Tensor:
        """``O`` for ``M = h zᵀ``; ``h``, ``z``: ``[B, d]`` → ``[B, d, d]`` (``project=False``:
        before ``W^O``, see :meth:`_attend`)."""
        if not self.rank_one:
            return self.forward_matrix(h.unsqueeze(2) * z.unsqueeze(1), project)
        b, hh = h.shape[0], self.n_heads
        zw = z.float() @ self.w_qkv  # [B, H(2d_k+d_v)] = zᵀ W for every projection and head
        out = self._low_precision() or h.dtype
        if self.d_k == self.d_v:
            # one [B, 3H, d, d_k] tensor, already in the heads-first layout attention wants
            s = rank_one_sigmoid(h.float(), zw.view(b, 3 * hh, self.d_k), out)
            q, k, v = s.split(hh, dim=1)
        else:
            hk = hh * self.d_k
            qk = rank_one_sigmoid(h.float(), zw[:, : 2 * hk].reshape(b, 2 * hh, self.d_k), out)
            q, k = qk.split(hh, dim=1)
            v = rank_one_sigmoid(h.float(), zw[:, 2 * hk :].reshape(b, hh, self.d_v), out)
        return self._attend(q, k, v, project)

    def forward_matrix(self, m: torch.Tensor, project: bool = True) -> torch.Tensor:
        """``O`` for a general ``M``: ``[B, d, d]`` → ``[B, d, d]``."""
        x = torch.sigmoid(m @ self.w_qkv)
        return self._attend(*self._heads(x.to(self._low_precision() or x.dtype)), project)

    def forward_diagonal(self, s: torch.Tensor, project: bool = True) -> torch.Tensor:
        """``O`` for a diagonal ``M = diag(s)``, ``s``: ``[B, d]`` (``opeci-inner``):
        ``diag(s) W`` scales row r of W by ``s_r``, again with no ``d×d×k`` product."""
        x = torch.sigmoid(s.unsqueeze(2) * self.w_qkv)
        return self._attend(*self._heads(x.to(self._low_precision() or x.dtype)), project)


class _RankOneSigmoid(torch.autograd.Function):
    """``S[b, c, r, k] = sigmoid(h[b, r] · a[b, c, k])`` in one pass, written in the layout
    attention reads (``[B, C, d, k]``); the backward reduces ``g·S(1−S)`` against ``a`` and
    ``h`` with batched matrix–vector products instead of materialising two more full-size
    products."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, a: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        # computed directly in out_dtype (bf16 under autocast: half the bytes of every pass)
        h, a = h.to(out_dtype), a.to(out_dtype)
        b, c, k = a.shape
        s = torch.empty(b, c, h.shape[1], k, dtype=out_dtype, device=h.device)
        torch.mul(h[:, None, :, None], a[:, :, None, :], out=s)
        s.sigmoid_()
        ctx.save_for_backward(h, a, s)
        return s

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        h, a, s = ctx.saved_tensors
        b, c, k = a.shape
        d = h.shape[1]
        gp = torch.ops.aten.sigmoid_backward(g.to(s.dtype), s).view(b * c, d, k)
        gh = torch.bmm(gp, a.reshape(b * c, k, 1)).view(b, c, d).float().sum(1)
        hx = h[:, None, None, :].expand(b, c, 1, d).reshape(b * c, 1, d)
        ga = torch.bmm(hx, gp).view(b, c, k).float()
        return gh, ga, None


def rank_one_sigmoid(h: torch.Tensor, a: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``sigmoid(h ⊗ a)``: ``h`` ``[B, d]``, ``a`` ``[B, C, k]`` → ``[B, C, d, k]``."""
    return _RankOneSigmoid.apply(h, a, out_dtype or h.dtype)


class CorrelationHead(nn.Module):
    """``flatten(O)`` (d²) → [Linear → BatchNorm1d → ReLU] per hidden size → Linear → 1 logit."""

    def __init__(self, d: int, hidden: tuple[int, ...] = (256, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = d * d
        for n in hidden:
            layers += [nn.Linear(width, n), nn.BatchNorm1d(n), nn.ReLU()]
            width = n
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, o: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """``o``: ``[B, d, d]`` → logits ``[B]``. Under autocast the Linear layers run in low
        precision; batch norm and the output always see float32. ``first`` replaces the first
        Linear's weight (a folded ``W^O``, :meth:`fold`; ``o`` is then ``concat_h(O_h)``)."""
        x = o.reshape(o.shape[0], -1)
        for n, layer in enumerate(self.mlp):
            if n == 0 and first is not None:
                assert isinstance(layer, nn.Linear)
                x = F.linear(x, first, layer.bias)
            else:
                x = layer(x)
            if isinstance(layer, nn.Linear):
                x = x.float()
        return x.squeeze(-1)

    def fold(self, w_o: nn.Linear) -> torch.Tensor:
        """The first Linear's weight with ``W^O`` folded in (exact: nothing nonlinear lies
        between them): ``W1 vec(C W^Oᵀ) = W1' vec(C)`` with
        ``W1'[n, r, k] = Σ_c W1[n, r, c] W^O[c, k]``. Scoring then skips the ``d × H·d_v × d``
        product per pair (14% of the multiply-adds with the defaults)."""
        w1 = self.mlp[0].weight  # [n, d·d]
        d = w_o.weight.shape[0]
        return (w1.view(w1.shape[0], -1, d) @ w_o.weight).reshape(w1.shape[0], -1)
