"""Graph tower: LightGCN over the train user-item graph, trained with BPR.

Its item embeddings initialise the graph part of the item vectors and are the targets the text tower is
aligned to; its own user.item scores are the `graph_only` ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recengine.evaluation import Queries, evaluate_queries
from recengine.progress import Progress
from recengine.split import Split

from .config import GraphConfig
from .optim import adam


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """Symmetrically normalised bipartite adjacency D^-1/2 A D^-1/2 as a sparse COO tensor."""
    pairs = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    u, i = pairs // n_items, pairs % n_items
    rows = np.concatenate([u, n_users + i])
    cols = np.concatenate([n_users + i, u])
    deg = np.bincount(rows, minlength=n_users + n_items).astype(np.float64)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    vals = inv[rows] * inv[cols]
    index = torch.from_numpy(np.stack([rows, cols]))
    adj = torch.sparse_coo_tensor(index, torch.from_numpy(vals.astype(np.float32)), (n_users + n_items,) * 2,
                                  check_invariants=False)
    return adj.coalesce()


class LightGCN(nn.Module):
    """Embeddings propagated `layers` times over the graph and averaged (He et al., 2020)."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, adj: torch.Tensor) -> None:
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.register_buffer("adj", adj, persistent=False)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding.weight
        total = x
        for _ in range(self.layers):
            x = torch.sparse.mm(self.adj, x)
            total = total + x
        out = total / (self.layers + 1)
        return out[: self.n_users], out[self.n_users:]


@dataclass
class GraphResult:
    """Trained LightGCN outputs (numpy, float32)."""

    user_emb: np.ndarray
    item_emb: np.ndarray
    best_ndcg: float
    epochs_run: int


def train_lightgcn(split: Split, dim: int, cfg: GraphConfig, queries: Queries, seed: int,
                   device: torch.device, progress: Progress) -> GraphResult:
    """BPR training with uniform negatives; keeps the epoch with the best validation NDCG@10."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    adj = normalized_adjacency(split.train.user, split.train.item, split.n_users, split.n_items).to(device)
    model = LightGCN(split.n_users, split.n_items, dim, cfg.layers, adj).to(device)
    opt = adam(model.parameters(), cfg.lr, decoupled=False)
    users = torch.from_numpy(split.train.user.astype(np.int64))
    items = torch.from_numpy(split.train.item.astype(np.int64))
    n = len(users)

    def evaluate() -> float:
        with torch.no_grad():
            ue, ie = model.propagate()
            ue, ie = ue.cpu().numpy(), ie.cpu().numpy()
        res = evaluate_queries(lambda q: ue[queries.users[q]] @ ie.T, queries)
        return res.metrics["ndcg@10"]

    best, best_state, bad, epoch = -1.0, None, 0, 0
    bar = progress.bar(range(cfg.epochs), "lightgcn")
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            u, pos = users[idx].to(device), items[idx].to(device)
            neg = torch.from_numpy(rng.integers(0, split.n_items, len(idx))).to(device)
            ue, ie = model.propagate()
            eu, ep, en = ue[u], ie[pos], ie[neg]
            loss = -torch.nn.functional.logsigmoid((eu * ep).sum(-1) - (eu * en).sum(-1)).mean()
            e0 = model.embedding.weight
            reg = (e0[u].pow(2).sum() + e0[split.n_users + pos].pow(2).sum()
                   + e0[split.n_users + neg].pow(2).sum()) / (2 * len(idx))
            loss = loss + cfg.reg * reg
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            score = evaluate()
            bar.set_postfix(loss=f"{total / n:.4f}", val_ndcg10=f"{score:.4f}")
            if score > best:
                best, bad = score, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        else:
            bar.set_postfix(loss=f"{total / n:.4f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    with torch.no_grad():
        ue, ie = model.propagate()
    return GraphResult(user_emb=ue.cpu().numpy().astype(np.float32), item_emb=ie.cpu().numpy().astype(np.float32),
                       best_ndcg=max(best, 0.0), epochs_run=epoch + 1)
