"""Fusion head: re-scores retrieved candidates from [u, v, u*v, scene, profile, popularity bucket, item feats].

score = u.v + MLP(features): the last layer starts at zero, so the head begins exactly as the retrieval
score and can only learn corrections. It is trained listwise (softmax over the positive and the top-K hard
negatives retrieved by the user tower) on next-item queries cut from the train sequences, and kept for
serving only if it improves validation NDCG@10 (`models.fusion.use_by_default`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recengine.evaluation import Queries, evaluate_queries
from recengine.progress import Progress
from recengine.split import Split, to_csr

from .config import FusionConfig
from .eval_sample import EVAL_USERS

ITEM_FEATURE_NAMES = ("text_graph_agreement", "no_graph", "graph_gate")
"""Columns of `items/item_feats.npy`: cos(t_i, g_i); 1 if the item has no graph vector; its gate."""
QUERY_BLOCK = 1024
"""Queries scored against the whole catalogue at once when mining hard negatives (bounds that score matrix)."""
TRAIN_USERS = EVAL_USERS
"""Most users whose train sequences give the head its training queries (a seeded sample when more qualify).

Why: each query's hard negatives are an exact top-k over the catalogue, so mining costs queries x items; with
every user's queries that grew as users x items (fusion stage CPU exponent 1.97, `recengine bench export`
2026-11-30). With at most this many users it costs at most TRAIN_USERS x `samples_per_user` x items, linear in
the catalogue, and an epoch of the head is bounded too. The head is small (one hidden layer) and learns a
correction of the retrieval score: MovieLens trains it on 610 users x 4 queries, so 5,000 users' 20,000
queries are eight times what it was tuned on. Data sets with at most this many users (MovieLens) are
unchanged, and the head still ships only if it beats retrieval on validation (`use_by_default`)."""


def item_features(text_vectors: np.ndarray, graph_vectors: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """float32 [n, len(ITEM_FEATURE_NAMES)] (cold items: agreement 0, no_graph 1, gate 0)."""
    tn = np.linalg.norm(text_vectors, axis=1)
    gn = np.linalg.norm(graph_vectors, axis=1)
    has = gn > 0
    cos = np.where(has, (text_vectors * graph_vectors).sum(1) / np.maximum(tn * gn, 1e-12), 0.0)
    return np.stack([cos, (~has).astype(np.float64), gate], axis=1).astype(np.float32)


class FusionHead(nn.Module):
    """ONNX signature: user [B,d], items [B,C,d], item_feats [B,C,F], pop_bucket [B,C], scene [B,S],
    profile [B,P] -> scores [B,C]."""

    def __init__(self, dim: int, n_feats: int, n_pop_buckets: int, scene_sizes: list[int],
                 profile_sizes: list[int], hidden: int, dropout: float) -> None:
        super().__init__()
        ctx = 8
        self.scene = nn.ModuleList([nn.Embedding(n, ctx) for n in scene_sizes])
        self.profile = nn.ModuleList([nn.Embedding(n, ctx) for n in profile_sizes])
        self.pop = nn.Embedding(n_pop_buckets, ctx)
        width = 3 * dim + 3 * ctx + n_feats
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, user: torch.Tensor, items: torch.Tensor, item_feats: torch.Tensor, pop_bucket: torch.Tensor,
                scene: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
        u = user.unsqueeze(1).expand_as(items)
        base = (u * items).sum(-1)
        s = sum(emb(scene[:, j]) for j, emb in enumerate(self.scene))
        p = sum(emb(profile[:, j]) for j, emb in enumerate(self.profile))
        c = items.shape[1]
        s = s.unsqueeze(1).expand(-1, c, -1)
        p = p.unsqueeze(1).expand(-1, c, -1)
        x = torch.cat([u, items, u * items, s, p, self.pop(pop_bucket), item_feats], dim=-1)
        return base + self.mlp(x).squeeze(-1)


def top_candidates(user_vecs: np.ndarray, item_vecs: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Top-k items by inner product per query, skipping each query's excluded items (int64 [n, k])."""
    scores = user_vecs @ item_vecs.T
    for row, ex in enumerate(exclude):
        scores[row, ex] = -np.inf
    k = min(k, item_vecs.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


@dataclass
class FusionData:
    """Inputs of the fusion head for a set of queries (candidates include the target at column 0)."""

    user: np.ndarray
    cands: np.ndarray
    scene: np.ndarray
    profile: np.ndarray


def training_users(split: Split, max_users: int = TRAIN_USERS, seed: int = 0) -> np.ndarray:
    """Users with at least 3 train events (the ones a query can be cut from): all of them when at most
    `max_users` (or `max_users` <= 0), else a seeded sample of `max_users` (sorted)."""
    counts = np.bincount(split.train.user, minlength=split.n_users)
    eligible = np.flatnonzero(counts >= 3).astype(np.int64)
    if max_users <= 0 or len(eligible) <= max_users:
        return eligible
    # its own stream: the positions drawn below from `seed` stay those of the unsampled users' loop
    pick = np.random.default_rng([seed, 1]).choice(len(eligible), size=max_users, replace=False)
    return eligible[np.sort(pick)]


def fusion_train_data(split: Split, train_scene: np.ndarray, profiles: np.ndarray, user_vector_fn,
                      item_vecs: np.ndarray, cfg: FusionConfig, max_history: int, seed: int,
                      max_users: int = TRAIN_USERS) -> FusionData:
    """Next-item queries at random positions of the train sequences of at most `max_users` users
    (`training_users`), with hard negatives from retrieval (exact top-k over the catalogue)."""
    rng = np.random.default_rng(seed)
    indptr, rows = to_csr(split.train.user, np.arange(len(split.train), dtype=np.int64), split.n_users)
    items_all = split.train.item.astype(np.int64)
    hist_rows, users, targets, scene_rows, excl = [], [], [], [], []
    for u in training_users(split, max_users, seed):
        r = rows[indptr[u]:indptr[u + 1]]
        positions = rng.choice(np.arange(2, len(r)), size=min(cfg.samples_per_user, len(r) - 2), replace=False)
        for p in np.sort(positions):
            seq = items_all[r[:p]]
            hist_rows.append(seq[-max_history:])
            users.append(u)
            targets.append(items_all[r[p]])
            scene_rows.append(r[p])
            excl.append(seq)
    if not users:
        return FusionData(np.zeros((0, item_vecs.shape[1]), np.float32), np.zeros((0, 2), np.int64),
                          np.zeros((0, train_scene.shape[1]), np.int64), np.zeros((0, profiles.shape[1]), np.int64))
    hist = np.full((len(users), max_history), -1, np.int64)
    for i, h in enumerate(hist_rows):
        hist[i, max_history - len(h):] = h
    users_a = np.asarray(users)
    scene = train_scene[np.asarray(scene_rows)]
    prof = profiles[users_a]
    uvec = user_vector_fn(hist, scene, prof)
    # in blocks of queries: one [queries, items] score matrix grew as users x items (2.2 GB at 10k items and
    # 5k users, measured by `recengine bench export`); blocks keep it at QUERY_BLOCK x items
    cands = np.concatenate([top_candidates(uvec[s:s + QUERY_BLOCK], item_vecs, excl[s:s + QUERY_BLOCK],
                                           cfg.n_candidates) for s in range(0, len(users), QUERY_BLOCK)])
    tgt = np.asarray(targets)
    out = np.empty((len(users), cands.shape[1]), np.int64)
    for i in range(len(users)):
        negs = cands[i][cands[i] != tgt[i]][: cands.shape[1] - 1]
        out[i, 0] = tgt[i]
        out[i, 1:1 + len(negs)] = negs
        if len(negs) < cands.shape[1] - 1:  # tiny catalogues: pad with random items
            out[i, 1 + len(negs):] = rng.integers(0, item_vecs.shape[0], cands.shape[1] - 1 - len(negs))
    return FusionData(uvec.astype(np.float32), out, scene, prof)


class FusionInputs:
    """Item-side arrays shared by training, evaluation and export."""

    def __init__(self, item_vecs: np.ndarray, item_feats: np.ndarray, pop_bucket: np.ndarray) -> None:
        self.vecs = torch.from_numpy(item_vecs.astype(np.float32))
        self.feats = torch.from_numpy(item_feats.astype(np.float32))
        self.pop = torch.from_numpy(pop_bucket.astype(np.int64))

    def gather(self, cands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.vecs[cands], self.feats[cands], self.pop[cands]


def rerank_scores(base: np.ndarray, cands: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Full score rows where the re-scored candidates sit above every other item (as served)."""
    out = np.array(base, dtype=np.float64, copy=True)
    finite = np.where(np.isfinite(out), out, 0.0)
    offset = np.abs(finite).max() + np.abs(fused).max() + 1.0
    rows = np.arange(len(out))[:, None]
    out[rows, cands] = offset + fused
    return out


def evaluate_with_fusion(head: FusionHead, inputs: FusionInputs, user_vecs: np.ndarray, queries: Queries,
                         scene: np.ndarray, profile: np.ndarray, n_candidates: int) -> dict[str, float]:
    """Validation/test metrics of retrieval (top `n_candidates`) followed by fusion re-scoring."""
    head.eval()
    item_vecs = inputs.vecs.numpy()

    def score(q: np.ndarray) -> np.ndarray:
        base = user_vecs[q] @ item_vecs.T
        excl = [queries.exclude_indices[queries.exclude_indptr[i]:queries.exclude_indptr[i + 1]] for i in q]
        if queries.exclude_extra is not None:
            excl = [np.concatenate([e, [x[i] for x in queries.exclude_extra if x[i] >= 0]]).astype(np.int64)
                    for e, i in zip(excl, q)]
        cands = top_candidates(user_vecs[q], item_vecs, excl, n_candidates)
        with torch.no_grad():
            v, f, p = inputs.gather(torch.from_numpy(cands))
            fused = head(torch.from_numpy(user_vecs[q]), v, f, p, torch.from_numpy(scene[q]),
                         torch.from_numpy(profile[q])).numpy()
        return rerank_scores(base, cands, fused)

    return evaluate_queries(score, queries).metrics


def train_fusion(head: FusionHead, inputs: FusionInputs, data: FusionData, valid_user_vecs: np.ndarray | None,
                 queries: Queries | None, valid_scene: np.ndarray | None, valid_profile: np.ndarray | None,
                 cfg: FusionConfig, seed: int, progress: Progress,
                 fixed_epochs: int | None = None) -> tuple[float, float, int]:
    """Listwise CE (positive at column 0); returns (retrieval-only NDCG@10, best fused NDCG@10, best epoch).

    The best epoch is 0 when no epoch beat retrieval alone (the zero-initialised head is kept). With
    `fixed_epochs` it trains that many epochs without validation (the refit on train+valid) and returns NaNs.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
    validate = fixed_epochs is None
    assert not validate or (valid_user_vecs is not None and queries is not None and valid_scene is not None
                            and valid_profile is not None)

    def evaluate() -> float:
        return evaluate_with_fusion(head, inputs, valid_user_vecs, queries, valid_scene, valid_profile,  # type: ignore[arg-type]
                                    cfg.n_candidates)["ndcg@10"]

    base = evaluate() if validate else float("nan")  # zero-initialised head = retrieval only
    best, best_state, bad, best_epoch = base, {k: v.clone() for k, v in head.state_dict().items()}, 0, 0
    user = torch.from_numpy(data.user)
    cands = torch.from_numpy(data.cands)
    scene, prof = torch.from_numpy(data.scene), torch.from_numpy(data.profile)
    bar = progress.bar(range(cfg.epochs if validate else int(fixed_epochs or 0)), "fusion")
    for epoch in bar:
        head.train()
        perm = torch.randperm(len(user), generator=gen)
        total = 0.0
        for start in range(0, len(perm), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            v, f, p = inputs.gather(cands[idx])
            logits = head(user[idx], v, f, p, scene[idx], prof[idx])
            loss = F.cross_entropy(logits, torch.zeros(len(idx), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if not validate:
            bar.set_postfix(loss=f"{total / max(len(user), 1):.4f}")
            best_state, best_epoch = {k: v.clone() for k, v in head.state_dict().items()}, epoch + 1
            continue
        score = evaluate()
        bar.set_postfix(loss=f"{total / max(len(user), 1):.4f}", val_ndcg10=f"{score:.4f}", retrieval=f"{base:.4f}")
        if score > best:
            best, bad, best_epoch = score, 0, epoch + 1
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    return base, best, best_epoch
