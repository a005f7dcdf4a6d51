"""LightGCN without text (He et al. 2020): ID embeddings smoothed over the user-item graph, BPR loss.

The graph-only reference point for recengine's graph tower: same propagation, no text, no sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._torch import EarlyStopping, seed_everything, torch_module
from .base import Recommender, TrainData, ValidateFn


def normalized_adjacency(data: TrainData) -> Any:
    """Symmetric-normalised bipartite adjacency D^-1/2 A D^-1/2 as a scipy CSR [U+I, U+I] matrix."""
    from recengine._deps import require

    sparse = require("scipy.sparse", "The LightGCN baseline")
    mat = data.user_item_matrix().tocoo()
    users = mat.row.astype(np.int64)
    items = mat.col.astype(np.int64) + data.n_users
    n = data.n_users + data.n_items
    rows = np.concatenate([users, items])
    cols = np.concatenate([items, users])
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1.0)), 0.0)
    vals = (inv_sqrt[rows] * inv_sqrt[cols]).astype(np.float32)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))


def _propagate_fn() -> Any:
    """A @ X as an autograd function over a symmetric scipy matrix (backward = A @ grad).

    torch's CPU sparse matmul backward is ~50x slower than scipy's CSR product on this graph, which made
    one LightGCN epoch on MovieLens-small take ~12 s instead of well under one.
    """
    torch = torch_module()

    class SymmetricSpMM(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, adj: Any) -> Any:  # type: ignore[override]
            ctx.adj = adj
            return torch.from_numpy(np.asarray(adj @ x.detach().numpy(), dtype=np.float32))

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:  # type: ignore[override]
            return torch.from_numpy(np.asarray(ctx.adj @ grad.numpy(), dtype=np.float32)), None

    return SymmetricSpMM.apply


class LightGCN(Recommender):
    """Mean of K propagation layers of free ID embeddings; trained with BPR on uniform negatives."""

    name = "lightgcn"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"dim": 16, "layers": 2, "reg": 1e-4, "lr": 1e-2, "epochs": 10, "eval_every": 2}]
        base = {"dim": 64, "lr": 2e-2, "batch": 4096, "epochs": 200, "eval_every": 5, "patience": 3, "reg": 1e-4}
        return [{**base, "layers": 3}, {**base, "layers": 2}]

    def _propagate(self, adj: Any, emb: Any) -> Any:
        torch = torch_module()
        spmm = _propagate_fn()
        layers = [emb]
        x = emb
        for _ in range(int(self.params.get("layers", 3))):
            x = spmm(x, adj)
            layers.append(x)
        return torch.stack(layers).mean(0)

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> LightGCN:
        torch = torch_module()
        p = self.params
        gen = seed_everything(data.seed)
        dim, lr, reg = int(p.get("dim", 64)), float(p.get("lr", 5e-3)), float(p.get("reg", 1e-4))
        batch, epochs = int(p.get("batch", 4096)), int(p.get("epochs", 100))
        eval_every = int(p.get("eval_every", 5))
        adj = normalized_adjacency(data)
        n_users, n_items = data.n_users, data.n_items
        self._n_items = n_items
        emb = torch.nn.Parameter(torch.randn(n_users + n_items, dim, generator=gen) * 0.1)
        opt = torch.optim.Adam([emb], lr=lr)
        users_all = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(data.indptr)))
        items_all = torch.from_numpy(data.indices.astype(np.int64))
        stopper = EarlyStopping(int(p.get("patience", 4)), self.info)
        holder = torch.nn.Module()
        holder.emb = emb
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(users_all), generator=gen)
            for start in range(0, len(perm), batch):
                idx = perm[start: start + batch]
                u, i = users_all[idx], items_all[idx]
                j = torch.randint(0, n_items, (len(idx),), generator=gen)
                final = self._propagate(adj, emb)
                eu, ei, ej = final[u], final[n_users + i], final[n_users + j]
                loss = -torch.nn.functional.logsigmoid((eu * ei).sum(1) - (eu * ej).sum(1)).mean()
                e0 = emb[torch.cat([u, n_users + i, n_users + j])]
                loss = loss + reg * e0.pow(2).sum() / (2 * len(idx))
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.info.epochs_run = epoch
            if validate is not None and (epoch % eval_every == 0 or epoch == epochs):
                self._freeze(adj, emb)
                if stopper.update(epoch, validate(self.score), holder):
                    break
        if validate is not None:
            stopper.restore(holder)
        self._freeze(adj, emb)
        return self

    def _freeze(self, adj: Any, emb: Any) -> None:
        """Cache the propagated user and item tables as numpy for fast scoring."""
        torch = torch_module()
        with torch.no_grad():
            final = self._propagate(adj, emb).numpy()
        n_users = adj.shape[0] - self._n_items
        self._users = np.ascontiguousarray(final[:n_users])
        self._items = np.ascontiguousarray(final[n_users:])

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[users] @ self._items.T
