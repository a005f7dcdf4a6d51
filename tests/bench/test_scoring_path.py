"""One scoring path: the bench's recengine scores are `Engine.recommend`'s, item for item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recengine.bench.baselines.base import TrainData
from recengine.bench.recengine_eval import QuerySet, onnx_scorer


def _query_set(engine, users: list[int]) -> tuple[QuerySet, list[list[str]]]:
    """Every chosen user's stored history as the query history (and the exclusions)."""
    ids = engine.item_ids()
    row_of = {i: r for r, i in enumerate(ids)}
    user_ids = engine.user_ids()
    histories = [[row_of[i] for i in engine.history(user_ids[u])] for u in users]
    n_users = len(user_ids)
    per_user: list[list[int]] = [[] for _ in range(n_users)]
    for u, h in zip(users, histories):
        per_user[u] = h
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum([len(h) for h in per_user], out=indptr[1:])
    indices = np.asarray([r for h in per_user for r in h], np.int64)
    data = TrainData(n_users=n_users, n_items=len(ids), indptr=indptr, indices=indices)
    ex_indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum([len(h) for h in histories], out=ex_indptr[1:])
    ex = np.asarray([r for h in histories for r in h], np.int64)
    qs = QuerySet(np.asarray(users, np.int64), data, {}, ex_indptr, ex)
    return qs, [[ids[r] for r in h] for h in histories]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_bench_scores_equal_engine_recommend(tiny_bundle: Path, variant: str):
    from recengine import Engine

    engine = Engine.open(tiny_bundle, device="cpu", threads=1, variant=variant, retrieval="exact")
    users = list(range(0, 40, 3))
    qs, history_ids = _query_set(engine, users)
    scorer = onnx_scorer(tiny_bundle, variant, qs, threads=1)
    if variant == "fp32":
        rows = scorer(np.arange(len(users)))  # batched like the bench
    else:  # dynamic INT8 quantises activations per batch: compare at recommend's batch of one
        rows = np.concatenate([scorer(np.array([j])) for j in range(len(users))])
    ids = engine.item_ids()
    user_ids = engine.user_ids()
    for j, u in enumerate(users):
        served = engine.recommend(user_id=user_ids[u], history=history_ids[j], k=10)
        ranked = np.argsort(-rows[j], kind="stable")[:10]
        assert [ids[r] for r in ranked] == [r.item_id for r in served]
        if variant == "fp32":
            np.testing.assert_allclose(np.sort(rows[j])[::-1][:10] - rows[j][ranked[0]] + served[0].score,
                                       [r.score for r in served], rtol=0, atol=1e-4)
        else:
            np.testing.assert_allclose(np.sort(rows[j])[::-1][:10] - rows[j][ranked[0]] + served[0].score,
                                       [r.score for r in served], rtol=0, atol=1e-5)


def test_score_catalogue_masks_what_recommend_never_returns(tiny_bundle: Path):
    """Excluded and removed items are -inf; the fused candidates rank above every other item."""
    from recengine import Engine, RowQuery

    engine = Engine.open(tiny_bundle, device="cpu", threads=1, retrieval="exact")
    ids = engine.item_ids()
    engine.remove_items([ids[7]])
    q = RowQuery(history=np.array([1, 2, 3]), scene=np.zeros(engine.scene_slots, np.int64),
                 profile=engine.user_profiles([0])[0], exclude=np.array([1, 2, 3]))
    (row,) = engine.score_catalogue([q])
    assert np.all(np.isneginf(row[[1, 2, 3, 7]]))
    assert np.isfinite(row).sum() == engine.n_items - 3
