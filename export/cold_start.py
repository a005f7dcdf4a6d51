"""Cold-item vectors on the warm scale: a linear generator from text embeddings to full item vectors.

Why: an item nobody has interacted with has only its text. Its text-only vector `s * P e` (the text part of
the gated item vector) lives in the right direction but on the wrong scale: text-only scores sit far below
warm items' (measured on ML-small: top-20 mean 3.0 against 5.9), so a new item never entered a user's list
(hybrid cold Recall@20 was 0.000 while a frozen-text baseline reached 0.020).

What: a ridge regression G(e) = W e + b fitted on the warm items, from the encoder's text embedding e to
the item's full trained vector v (text + graph), in the spirit of the cold-start mappers that regress
collaborative vectors from content (DropoutNet/Heater's regression onto the warm model, ALDI's
alignment of cold to warm scores). Cold items then score on the warm scale by construction: for a user
u, u . G(e) is the least-squares estimate of u . v from the text. G is linear, so it is folded into the
exported encoder's projection (weight W, bias b): `item_vector` of the encoder is G(e), every item added
at serving time gets it, and catalogue items without interactions are stored with it.

Media vectors: when the data set has `item_vectors.npy` (image/audio vectors made elsewhere, m), G regresses
from the concatenation [e; m~] with m~ = (m - mean) / scale standardised over the warm items:
G(e, m) = W e + W_media m~ + b, each block with its own ridge strength (ridge x the block's mean squared
norm, so neither block is favoured by its width or scale). The text part W e + b stays folded into the
encoder; W_media, mean and scale are written to the bundle (`items.media_projection`, `media_mean`,
`media_scale`, docs/bundle.md) and added to the encoder's `item_vector` for catalogue cold items and for
items added live with a `vector`. An item without a media vector gets m~ = 0 (the warm mean).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ColdGenerator:
    """G(e) = W e + b: a cold item's vector from its text embedding e."""

    W: np.ndarray
    """float32 [d, H]"""
    b: np.ndarray
    """float32 [d]"""
    spread: float = 1.0
    """The alignment factor that was applied (1: none)."""
    W_media: np.ndarray | None = None
    """float32 [d, d_media]: the media part on standardised media vectors (None: fitted on text alone)."""
    media_mean: np.ndarray | None = None
    """float32 [d_media]: the warm items' mean media vector."""
    media_scale: np.ndarray | None = None
    """float32 [d_media]: the warm items' standard deviation per dimension (1 where it is ~0)."""

    @classmethod
    def fit(cls, text_embeddings: np.ndarray, vectors: np.ndarray, warm: np.ndarray, ridge: float,
            users: np.ndarray | None = None, media: np.ndarray | None = None) -> ColdGenerator:
        """Ridge regression on the warm items (from [e; standardised media] when `media`, float
        [n_items, d_media], is given); with `users` (user vectors), widened around the warm items'
        mean prediction by std(u . v) / std(u . G(e)) (each user's scores over the warm items centred), so
        the generated scores spread around each user's mean like the real ones (least squares shrinks them
        towards the mean)."""
        if media is not None:
            return cls._fit_with_media(text_embeddings, vectors, warm, ridge, users, media)
        W, b = fit_generator(text_embeddings, vectors, warm, ridge)
        if users is None or len(users) == 0:
            return cls(W, b)
        pred = generate(text_embeddings[warm], W, b)
        real = np.asarray(users, np.float64) @ np.asarray(vectors, np.float64)[warm].T
        made = np.asarray(users, np.float64) @ pred.astype(np.float64).T
        # each user's scores centred: how far apart items are for a user is what ranking sees
        real -= real.mean(axis=1, keepdims=True)
        made -= made.mean(axis=1, keepdims=True)
        spread = float(real.std() / made.std()) if made.std() > 1e-12 else 1.0
        spread = min(max(spread, 1.0), 100.0)  # only ever undo shrinkage, within reason
        centre = pred.mean(axis=0)
        return cls((W * spread).astype(np.float32), (b * spread + (1.0 - spread) * centre).astype(np.float32), spread)

    @classmethod
    def _fit_with_media(cls, text_embeddings: np.ndarray, vectors: np.ndarray, warm: np.ndarray, ridge: float,
                        users: np.ndarray | None, media: np.ndarray) -> ColdGenerator:
        media = np.asarray(media, dtype=np.float64)
        if media.ndim != 2 or media.shape[0] != np.asarray(text_embeddings).shape[0]:
            raise ValueError(f"media vectors of shape {media.shape} for {np.asarray(text_embeddings).shape[0]} items")
        mean, scale = standardisation(media[warm])
        m = (media - mean) / scale
        (W, W_media), b = fit_blocks([np.asarray(text_embeddings), m], vectors, warm, ridge)
        spread = 1.0
        if users is not None and len(users) > 0:
            pred = generate(text_embeddings[warm], W, b) + m[warm].astype(np.float32) @ W_media.T
            spread = alignment_spread(users, np.asarray(vectors)[warm], pred)
            centre = pred.mean(axis=0)
            W, W_media, b = W * spread, W_media * spread, b * spread + (1.0 - spread) * centre
        def f32(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a, dtype=np.float32)

        return cls(f32(W), f32(b), spread, f32(W_media), f32(mean), f32(scale))

    def vectors(self, text_embeddings: np.ndarray, media: np.ndarray | None = None) -> np.ndarray:
        """G for every row: the text part, plus the media part when this generator has one and `media` is
        given."""
        out = generate(text_embeddings, self.W, self.b)
        if media is not None and self.W_media is not None:
            out = out + self.media_vectors(media)
        return out

    def media_vectors(self, media: np.ndarray) -> np.ndarray:
        """The media part W_media (m - mean) / scale of every row: float32 [n, d] (the rule the runtime's
        `add_items` applies, recengine.live.encode_items)."""
        if self.W_media is None or self.media_mean is None or self.media_scale is None:
            raise ValueError("this cold-item generator was fitted without media vectors")
        m = (np.asarray(media, dtype=np.float32) - self.media_mean) / self.media_scale
        return (m @ self.W_media.T).astype(np.float32)

    def fold_into(self, tower: nn.Module) -> nn.Module:
        return with_generator(tower, self.W, self.b)


def fit_generator(text_embeddings: np.ndarray, vectors: np.ndarray, warm: np.ndarray,
                  ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """(W [d, H], b [d]) minimising sum_warm |W e_i + b - v_i|^2 + lam |W|^2, lam = ridge x the mean squared
    norm of the centred embeddings (scale-free: the same `ridge` suits any encoder width)."""
    e = np.asarray(text_embeddings, dtype=np.float64)[warm]
    v = np.asarray(vectors, dtype=np.float64)[warm]
    if e.shape[0] == 0:
        raise ValueError("no warm items to fit the cold-item generator on")
    e_mean, v_mean = e.mean(axis=0), v.mean(axis=0)
    ec, vc = e - e_mean, v - v_mean
    lam = float(ridge) * max(float((ec * ec).sum(axis=1).mean()), 1e-12)
    gram = ec.T @ ec + lam * np.eye(ec.shape[1])
    W = np.linalg.solve(gram, ec.T @ vc).T  # [d, H]
    b = v_mean - W @ e_mean
    return W.astype(np.float32), b.astype(np.float32)


def standardisation(media: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per dimension of `media` rows; scale is the standard deviation, 1 where it is ~0 (a
    constant dimension carries nothing and must not be blown up)."""
    media = np.asarray(media, dtype=np.float64)
    mean, std = media.mean(axis=0), media.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def fit_blocks(blocks: list[np.ndarray], vectors: np.ndarray, warm: np.ndarray,
               ridge: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Ridge regression of `vectors` on the concatenated `blocks` over the warm rows, each block with
    lam_k = ridge x its mean squared centred norm: ([W_k [d, width_k]], b [d]) (float64)."""
    xs = [np.asarray(x, dtype=np.float64)[warm] for x in blocks]
    v = np.asarray(vectors, dtype=np.float64)[warm]
    if v.shape[0] == 0:
        raise ValueError("no warm items to fit the cold-item generator on")
    means = [x.mean(axis=0) for x in xs]
    xc = np.concatenate([x - mu for x, mu in zip(xs, means)], axis=1)
    lams = np.concatenate([np.full(x.shape[1], float(ridge) * max(float(((x - mu) ** 2).sum(axis=1).mean()), 1e-12))
                           for x, mu in zip(xs, means)])
    v_mean = v.mean(axis=0)
    W = np.linalg.solve(xc.T @ xc + np.diag(lams), xc.T @ (v - v_mean)).T  # [d, sum widths]
    cuts = np.cumsum([x.shape[1] for x in xs])[:-1]
    parts = np.split(W, cuts, axis=1)
    b = v_mean - sum(p @ mu for p, mu in zip(parts, means))
    return parts, b


def alignment_spread(users: np.ndarray, real_vectors: np.ndarray, made_vectors: np.ndarray) -> float:
    """std(u . v) / std(u . G) over the given items, each user's scores centred, clipped to [1, 100]."""
    u = np.asarray(users, np.float64)
    real = u @ np.asarray(real_vectors, np.float64).T
    made = u @ np.asarray(made_vectors, np.float64).T
    real -= real.mean(axis=1, keepdims=True)
    made -= made.mean(axis=1, keepdims=True)
    spread = float(real.std() / made.std()) if made.std() > 1e-12 else 1.0
    return min(max(spread, 1.0), 100.0)


def generate(text_embeddings: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """G(e) for every row: float32 [n, d]."""
    return (np.asarray(text_embeddings, dtype=np.float32) @ W.T + b).astype(np.float32)


def with_generator(tower: nn.Module, W: np.ndarray, b: np.ndarray) -> nn.Module:
    """A copy of the text tower whose `item_vector` is G(text_embedding) (the projection replaced by W, b)."""
    out = copy.deepcopy(tower)
    proj = nn.Linear(W.shape[1], W.shape[0], bias=True)
    with torch.no_grad():
        proj.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
        proj.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
    out.projection = proj.to(next(tower.parameters()).device)
    return out


__all__ = ["ColdGenerator", "fit_generator", "fit_blocks", "standardisation", "alignment_spread", "generate",
           "with_generator"]
