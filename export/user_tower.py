"""User tower: SASRec-style causal self-attention over the user's recent item vectors, plus scene/profile.

The tower reads *item vectors* (not item ids), so a user whose history contains items added after export, or
cold items known only by their text, is handled with no retraining. Its output lives in the item space:
retrieval is an inner product `user_vector . item_vector`.

Written with plain matmuls (no `nn.MultiheadAttention`) so the ONNX graph is simple, has dynamic `B` and
`L` axes, and quantises cleanly (every weight is a MatMul initialiser).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        q = q.reshape(b, length, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, length, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, length, self.heads, self.head_dim).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + bias
        att = self.drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, length, dim)
        return self.out(y)


class Block(nn.Module):
    """Pre-LN transformer block (attention + position-wise feed-forward)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), bias))
        return x + self.drop(self.ff(self.ln2(x)))


class UserTower(nn.Module):
    """SASRec over left-padded history item vectors; scene/profile embeddings added to the output.

    ONNX signature (docs/bundle.md): `history` [B, L, d], `history_mask` [B, L], `scene` int64 [B, S],
    `profile` int64 [B, P] -> `user_vector` [B, d].
    """

    def __init__(self, dim: int, max_history: int, layers: int, heads: int, dropout: float,
                 scene_sizes: list[int], profile_sizes: list[int]) -> None:
        super().__init__()
        self.dim, self.max_history = dim, max_history
        self.input_map = nn.Linear(dim, dim)
        self.positions = nn.Parameter(torch.randn(max_history, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, heads, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(dim)
        self.scene = nn.ModuleList([nn.Embedding(n, dim) for n in scene_sizes])
        self.profile = nn.ModuleList([nn.Embedding(n, dim) for n in profile_sizes])
        for emb in list(self.scene) + list(self.profile):
            nn.init.zeros_(emb.weight)  # start neutral: context only moves the vector once it helps

    def sequence(self, history: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position [B, L, d] (position t has seen items <= t)."""
        length = history.shape[1]
        mask = history_mask.unsqueeze(-1)
        # positions are counted from the end: the most recent item always gets the last embedding
        pos = self.positions[self.max_history - length:]
        x = self.drop((self.input_map(history) + pos) * mask)
        idx = torch.arange(length, device=history.device)
        causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # [L(query), L(key)]
        itself = idx.unsqueeze(0) == idx.unsqueeze(1)  # every query may see itself: no all-masked rows
        allowed = causal.unsqueeze(0) & ((history_mask.unsqueeze(1) > 0) | itself.unsqueeze(0))
        bias = torch.where(allowed, 0.0, -1e9).unsqueeze(1).to(history.dtype)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, bias) * mask
        return self.ln(x)

    def context(self, scene: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        """Sum of scene and profile embeddings; `scene`/`profile` are [..., slots] int64."""
        out = 0.0
        for j, emb in enumerate(self.scene):
            out = out + emb(scene[..., j])
        for j, emb in enumerate(self.profile):
            out = out + emb(profile[..., j])
        return out

    def forward(self, history: torch.Tensor, history_mask: torch.Tensor, scene: torch.Tensor,
                profile: torch.Tensor) -> torch.Tensor:
        hidden = self.sequence(history, history_mask)[:, -1]
        return hidden + self.context(scene, profile)
