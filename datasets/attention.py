"""Multi-head self-attention whose heads are players: each head's output passes through a ``HeadGate`` before the
output projection, so a unit site ``PATH.heads`` (axis ``heads``) masks whole heads and leaves the others untouched.

Written out (no fused kernel) so that forward hooks and ``torch.fx`` see every step: the gate is an ordinary
module whose output is (batch, tokens, heads, head_dim), and zeroing head h there is exactly removing that head's
contribution, since the output projection is linear in the concatenated heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class HeadGate(nn.Identity):
    """The per-head outputs (batch, tokens, heads, head_dim) of an attention module: the site of its head players.

    Its default unit axis is ``heads`` (dimension -2), so a pair names it by its path alone.
    """


class SelfAttention(nn.Module):
    """Multi-head self-attention over (batch, tokens, width), with a ``HeadGate`` named ``heads``.

    Args:
        width: the model width (a multiple of ``heads``).
        heads: the number of heads.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.n_heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.heads = HeadGate()
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, width = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        per_head = self.heads((weights @ v).transpose(1, 2))  # (batch, tokens, heads, head_dim)
        return self.proj(per_head.reshape(b, t, width))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm(x)), then x + fc2(act(fc1(norm(x)))).

    The MLP's hidden neurons are the output features of ``act`` (a site ``PATH.act``), its heads ``PATH.attn.heads``.
    """

    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))
