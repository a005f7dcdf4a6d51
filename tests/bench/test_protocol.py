"""The bench protocol is the foundation's split and metrics, wired per query."""

from __future__ import annotations

import numpy as np

from recengine.bench.baselines import create
from recengine.bench.protocol import Protocol, cold_protocol, evaluate, gather_rows, scene_metrics
from recengine.metrics import evaluate_full_ranking


def test_queries_exclude_everything_seen_before_the_held_out_event(ml_tiny_dataset) -> None:
    p = Protocol.build(ml_tiny_dataset, seed=0)
    assert len(p.valid) == len(p.test) == len(p.split.test)
    for q in range(len(p.test)):
        u = p.test.users[q]
        excluded = set(p.test.exclude_indices[p.test.exclude_indptr[q]: p.test.exclude_indptr[q + 1]].tolist())
        assert excluded == set(p.train_valid.history(u).tolist())
        assert p.split.valid.item[p.split.valid.user == u][0] in excluded
        assert p.test.targets[q] not in excluded
        v_excluded = p.valid.exclude_indices[p.valid.exclude_indptr[q]: p.valid.exclude_indptr[q + 1]]
        assert set(v_excluded.tolist()) == set(p.train.history(p.valid.users[q]).tolist())
    # train+valid histories end with the validation item (chronological order kept)
    u0 = p.test.users[0]
    assert p.train_valid.history(u0)[-1] == p.split.valid.item[p.split.valid.user == u0][0]


def test_evaluate_is_the_foundation_metric(ml_tiny_dataset) -> None:
    p = Protocol.build(ml_tiny_dataset, seed=0)
    model = create("popularity", {}).fit(p.train_valid)
    mine = evaluate(model.score, p.test).metrics
    direct = evaluate_full_ranking(lambda rows: model.score(p.test.users[rows]), p.test.targets,
                                   p.test.exclude_indptr, p.test.exclude_indices, p.test.popularity).metrics
    assert mine == direct


def test_scene_metrics_partition_the_test_queries(ml_tiny_dataset) -> None:
    p = Protocol.build(ml_tiny_dataset, seed=0)
    assert p.test.context, "the MovieLens adapter derives ctx_daypart/ctx_weekday"
    result = evaluate(create("popularity", {}).fit(p.train_valid).score, p.test)
    scenes = scene_metrics(result, p.test)
    for values in scenes.values():
        total = sum(v["n_queries"] for v in values.values())
        assert total == len(p.test)
        hits = sum(v["hr@10"] * v["n_queries"] for v in values.values())
        assert abs(hits / total - result.metrics["hr@10"]) < 1e-9


def test_cold_protocol_holds_cold_items_out_of_training(ml_tiny_dataset) -> None:
    cold = cold_protocol(ml_tiny_dataset, fraction=0.1, min_interactions=5, seed=0)
    assert len(cold.split.cold_items) > 0 and len(cold.users) > 0
    assert not np.isin(cold.data.indices, cold.split.cold_items).any()
    for rel in cold.relevant:
        assert len(rel) and np.isin(rel, cold.split.cold_items).all()
    # an oracle that scores exactly the user's cold items first has recall 1
    rel_by_user = dict(zip(cold.users.tolist(), cold.relevant))

    def oracle(users: np.ndarray) -> np.ndarray:
        s = np.zeros((len(users), ml_tiny_dataset.n_items))
        for row, u in enumerate(users):
            s[row, rel_by_user[int(u)]] = 1.0 + np.arange(len(rel_by_user[int(u)]))[::-1]
        return s

    capped = np.mean([min(len(r), 20) / len(r) for r in cold.relevant])
    assert abs(cold.recall(oracle) - capped) < 1e-9
    # popularity fitted on warm data never recommends a cold item
    assert cold.recall(create("popularity", {}).fit(cold.data).score) == 0.0


def test_gather_rows() -> None:
    indptr = np.array([0, 2, 2, 5])
    indices = np.array([1, 2, 7, 8, 9])
    ptr, idx = gather_rows(indptr, indices, np.array([2, 0, 1]))
    assert ptr.tolist() == [0, 3, 5, 5] and idx.tolist() == [7, 8, 9, 1, 2]
