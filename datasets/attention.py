"""Transformers whose attention heads are players: each head's output passes through a ``HeadGate`` before the
output projection, so a unit site ``PATH.heads`` (axis ``heads``) masks whole heads and leaves the others untouched.

Written out (no fused kernel) so that forward hooks and ``torch.fx`` see every step: the gate is an ordinary
module whose output is (batch, tokens, heads, head_dim), and zeroing head h there is exactly removing that head's
contribution, since the output projection is linear in the concatenated heads.

PyTorch's ``nn.MultiheadAttention`` and torchvision's ``VisionTransformer`` (which uses it) compute attention in one
fused call (``F.multi_head_attention_forward``, or ``scaled_dot_product_attention``) that never calls a submodule per
head, so no hook can reach a head there. To play their heads, build this module with the same weights:
``in_proj_weight``/``in_proj_bias`` are ``qkv``'s weight and bias (q, k, v stacked in that order, as here) and
``out_proj`` is ``proj``; :func:`from_multihead_attention` does it, and a test checks that both give the same outputs.

Two models are built from these blocks: :class:`VisionTransformer` (patches of an image) and
:class:`TextTransformer` (token ids, ``datasets.text.sequences``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from datasets.text import PAD_ID, SPECIAL_TOKENS

MASKED_SCORE = torch.finfo(torch.float32).min  # the attention score of a padding token (a constant: fx traces it)


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

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention over ``x`` (batch, tokens, width); ``pad`` (batch, tokens), True where a token is padding
        that no token may attend to."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if pad is not None:
            # float32's lowest finite value, not -inf: a sequence of padding alone attends uniformly, not to NaN.
            scores = scores.masked_fill(pad[:, None, None, :], MASKED_SCORE)
        weights = torch.softmax(scores, dim=-1)
        per_head = self.heads((weights @ v).transpose(1, 2))  # (batch, tokens, heads, head_dim)
        return self.proj(per_head.reshape(b, t, self.n_heads * self.head_dim))

    def keep_heads(self, keep: torch.Tensor | list[int]) -> None:
        """Removes every head outside ``keep`` (indices, in order), in place: its q, k and v rows of ``qkv`` and its
        columns of ``proj`` go, so the module computes what it computed with those heads' gate outputs zeroed.
        With no head kept, ``proj`` reads zero features and outputs its bias."""
        keep = torch.as_tensor(keep, dtype=torch.long, device=self.qkv.weight.device).flatten()
        if len(keep) and (keep.unique().numel() != len(keep) or not bool((keep[1:] > keep[:-1]).all())
                          or int(keep.min()) < 0 or int(keep.max()) >= self.n_heads):
            raise ValueError(f"heads to keep must be distinct increasing indices in [0, {self.n_heads}), "
                             f"got {keep.tolist()}")
        width, d = self.qkv.in_features, self.head_dim
        features = (keep[:, None] * d + torch.arange(d, device=keep.device)).flatten()  # the heads' columns
        rows = torch.cat([part * self.n_heads * d + features for part in range(3)])  # their q, k, v rows
        with warnings.catch_warnings():  # no head kept: torch warns that initialising 0 weights does nothing
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors", category=UserWarning)
            qkv, proj = nn.Linear(width, len(rows)), nn.Linear(len(features), self.proj.out_features)
        with torch.no_grad():
            qkv.weight.copy_(self.qkv.weight[rows])
            qkv.bias.copy_(self.qkv.bias[rows])
            proj.weight.copy_(self.proj.weight[:, features])
            proj.bias.copy_(self.proj.bias)
        self.qkv = qkv.to(self.qkv.weight)
        self.proj = proj.to(self.proj.weight)
        self.n_heads = len(keep)


def from_multihead_attention(attention: nn.MultiheadAttention) -> SelfAttention:
    """A :class:`SelfAttention` with the weights of a batch-first ``nn.MultiheadAttention`` (self-attention, q, k
    and v of one width, biases on, no ``add_bias_kv`` or ``add_zero_attn``): the same outputs in eval mode (the
    attention-weight dropout of ``nn.MultiheadAttention`` is not carried over), with a ``HeadGate`` whose heads can be
    players."""
    if not attention.batch_first or not attention._qkv_same_embed_dim or attention.in_proj_bias is None \
            or attention.bias_k is not None or attention.add_zero_attn:
        raise ValueError("only batch-first nn.MultiheadAttention with one width for q, k, v, biases, and neither "
                         "add_bias_kv nor add_zero_attn is supported")
    module = SelfAttention(attention.embed_dim, attention.num_heads)
    with torch.no_grad():
        module.qkv.weight.copy_(attention.in_proj_weight)
        module.qkv.bias.copy_(attention.in_proj_bias)
        module.proj.weight.copy_(attention.out_proj.weight)
        module.proj.bias.copy_(attention.out_proj.bias)
    return module.to(attention.in_proj_weight)


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm(x)), then x + fc2(act(fc1(norm(x)))).

    The MLP's hidden neurons are the output features of ``act`` (a site ``PATH.act``), its heads ``PATH.attn.heads``.
    """

    def __init__(self, width: int, heads: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.norm1(x), pad))
        return x + self.drop2(self.fc2(self.act(self.fc1(self.norm2(x)))))


def _init(model: nn.Module) -> None:
    """ViT's initialisation: truncated-normal (sd 0.02) Linear weights and positions, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """A small ViT (Dosovitskiy et al. 2021): non-overlapping patches embedded by a strided conv, a classification
    token, learned positions, ``depth`` pre-norm blocks, a final LayerNorm and a Linear head on the classification
    token. Its players: ``blocks.N.attn.heads`` (heads) and ``blocks.N.act:features`` (MLP neurons).

    Args:
        input_shape: (channels, height, width), both sides multiples of ``patch``.
        num_classes: classes.
        patch: the patch side.
        width, depth, heads, hidden: the model width, blocks, heads per block and MLP hidden neurons per block.
        dropout: dropout on each block's two residual branches while training.
    """

    def __init__(self, *, input_shape: tuple[int, ...], num_classes: int, patch: int = 7, width: int = 64,
                 depth: int = 4, heads: int = 4, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        channels, height, side = input_shape
        if height % patch or side % patch:
            raise ValueError(f"image {height}x{side} is not a whole number of {patch}x{patch} patches")
        self.patch = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, (height // patch) * (side // patch) + 1, width))
        self.blocks = nn.ModuleList(Block(width, heads, hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        _init(self)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h)[:, 0])


class TextTransformer(nn.Module):
    """A small text encoder: token and learned position embeddings, ``depth`` pre-norm blocks in which no token
    attends to padding, a final LayerNorm and a Linear head on the classification token (id 1, first in every
    sequence). Reads float token ids (``datasets.text.sequences``). Its players: ``blocks.N.attn.heads`` and
    ``blocks.N.act:features``.

    Args:
        input_shape: (sequence length,).
        num_classes: classes.
        vocab_size: the vocabulary's size without the 3 special ids (the dataset's ``vocab_size``).
        width, depth, heads, hidden, dropout: as :class:`VisionTransformer`'s.
    """

    def __init__(self, *, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 5000, width: int = 64,
                 depth: int = 2, heads: int = 4, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.pad_id, self.n_ids = PAD_ID, vocab_size + len(SPECIAL_TOKENS)
        self.embed = nn.Embedding(self.n_ids, width)
        self.pos = nn.Parameter(torch.zeros(1, input_shape[0], width))
        self.blocks = nn.ModuleList(Block(width, heads, hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        _init(self)
        nn.init.trunc_normal_(self.embed.weight, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)

    discrete_inputs = True  # token ids: an input interpolated towards a baseline means nothing

    def check_inputs(self, x: torch.Tensor) -> None:
        """Raises a one-line ValueError unless ``x`` holds whole token ids this model embeds."""
        if x.numel() and (bool((x != x.round()).any()) or float(x.min()) < 0 or float(x.max()) >= self.n_ids):
            raise ValueError(f"token ids must be whole numbers in [0, {self.n_ids}) (vocab_size {self.n_ids - 3} + "
                             f"3 special ids); got values in [{float(x.min()):g}, {float(x.max()):g}]: is the "
                             "model's vocab_size the dataset's?")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        pad = ids == self.pad_id
        h = self.embed(ids) + self.pos
        for block in self.blocks:
            h = block(h, pad)
        return self.head(self.norm(h)[:, 0])

    def example_input(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Random token ids of ``batch`` full sequences (for timing; ``methods.network.physical``)."""
        ids = torch.randint(3, self.n_ids, (batch, self.pos.shape[1]), generator=generator)
        ids[:, 0] = 1
        return ids.float()
