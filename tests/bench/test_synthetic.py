"""`recengine.bench.synthetic` and `bench latency --synthetic-items` on a tiny N: a complete bundle the real
reader and `Engine` serve, consistent with itself (histories, popularity, user vectors, index ef)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recengine.bench.synthetic import build_synthetic_bundle, choose_ef, exact_topk, recall_at_k
from recengine.cli import cli

N_EXTRA = 300


@pytest.fixture(scope="module")
def synthetic(lean_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synthetic") / "bundle"
    return build_synthetic_bundle(lean_bundle, out, N_EXTRA, seed=3, num_threads=2, recall_queries=100)


def test_the_synthetic_bundle_is_complete_and_served(synthetic, lean_bundle: Path) -> None:
    from recengine import Engine
    from recengine.bundle import open_bundle

    src, syn = open_bundle(lean_bundle), open_bundle(synthetic.path)  # checksums and schema verified
    n_real, n = src.manifest["data"]["n_items"], src.manifest["data"]["n_items"] + N_EXTRA
    assert synthetic.n_items == n and syn.manifest["data"]["n_items"] == n
    ids = syn.load_json(syn.manifest["items"]["ids"])
    assert ids[:n_real] == src.load_json(src.manifest["items"]["ids"]) and len(set(ids)) == n
    for key in ("vectors", "text_vectors", "text_embeddings", "item_feats"):
        big, small = syn.load_npy(syn.manifest["items"][key]), src.load_npy(src.manifest["items"][key])
        assert big.shape == (n, small.shape[1]) and big.dtype == np.float32
        np.testing.assert_array_equal(big[:n_real], small)  # the real rows are kept as they are
        assert np.isfinite(big).all() and not np.allclose(big[n_real:], big[n_real:].mean(0))
    emb = syn.load_npy(syn.manifest["items"]["text_embeddings"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    attrs = syn.load_json(syn.manifest["items"]["attrs"])
    assert {"attr_lang", "attr_year", *src.load_json(src.manifest["items"]["attrs"])} <= set(attrs)
    assert all(len(v) == n for v in attrs.values())
    # the model files are the source's, byte for byte
    for rel, meta in src.manifest["files"].items():
        if rel.startswith("models/") or rel == "tokenizer.json":
            assert syn.manifest["files"][rel]["sha256"] == meta["sha256"]

    # histories: valid rows, no repeats within a user; popularity = distinct (user, item) pairs
    indptr = syn.load_npy(syn.manifest["users"]["history_indptr"])
    hist = syn.load_npy(syn.manifest["users"]["history_items"])
    assert indptr[-1] == hist.size == synthetic.n_interactions and hist.min() >= 0 and hist.max() < n
    n_users = len(indptr) - 1
    assert n_users == synthetic.n_users > src.manifest["data"]["n_users"]
    counts = np.zeros(n, np.int64)
    for u in range(n_users):
        h = hist[indptr[u]: indptr[u + 1]]
        assert len(np.unique(h)) == len(h)
        counts[h] += 1
    np.testing.assert_array_equal(syn.load_npy(syn.manifest["items"]["popularity"]), counts)
    assert (counts[n_real:] > 0).any()

    engine = Engine.open(synthetic.path, device="cpu", threads=1, variant="fp32")
    # stored user vectors are what the bundle's user tower computes from the stored histories
    users = json.loads((synthetic.path / "users/ids.json").read_text())
    new_users = [u for u in users if u.startswith("syn-u")][:20]
    stored = syn.load_npy(syn.manifest["users"]["vectors"])[[users.index(u) for u in new_users]]
    np.testing.assert_allclose(engine.stages().user_tower(new_users), stored, atol=1e-4)
    # every serving path works on it, filters included
    recs = engine.recommend(user_id=new_users[0], k=10, filter={"attr_lang": "fr"})
    langs = dict(zip(ids, attrs["attr_lang"]))
    assert len(recs) > 0 and all(langs[r.item_id] == "fr" for r in recs)
    assert len(engine.similar_items(ids[-1], k=5)) == 5
    assert len(engine.search("a story", k=5)) == 5


def test_served_ef_is_the_smallest_reaching_the_recall(synthetic) -> None:
    import hnswlib  # noqa: F401

    manifest = json.loads((synthetic.path / "manifest.json").read_text())
    for name, info in synthetic.index.items():
        assert manifest["index"][name]["ef_search"] == info["ef_search"]
        assert manifest["index"][name]["count"] == synthetic.n_items
        passing = [p["ef"] for p in info["sweep"] if p["recall@10"] >= 0.95]
        assert info["ef_search"] == (min(passing) if passing else max(p["ef"] for p in info["sweep"]))


def test_exact_topk_and_choose_ef() -> None:
    from recengine.retrieval import HnswBackend

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((1000, 8)).astype(np.float32)
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    truth = np.argsort(-(queries @ matrix.T), axis=1)[:, :10]
    got = exact_topk(matrix, queries, 10, chunk=128)  # chunks smaller than the catalogue
    np.testing.assert_array_equal(got, truth)
    assert recall_at_k(got, truth) == 1.0 and recall_at_k(np.full_like(got, 999_999), truth) == 0.0
    built = HnswBackend.build(matrix, np.arange(1000), M=4, ef_construction=10, ef=10, augment=True)
    ef, sweep = choose_ef(built, queries, truth, (10, 400), 0.99)
    assert [p["ef"] for p in sweep] == [10, 400]
    assert sweep[1]["recall@10"] >= sweep[0]["recall@10"]
    assert ef == (10 if sweep[0]["recall@10"] >= 0.99 else 400)
    ef, _ = choose_ef(built, queries, truth, (10, 20), 1.01)  # never reached: the largest
    assert ef == 20


def test_bench_latency_synthetic_e2e(lean_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(lean_bundle), "--synthetic-items", "200", "--variants", "int8", "--batch", "1",
        "--stages", "e2e", "--requests", "3", "--duration", "1", "--warmup", "1", "--open-runs", "1", "--no-torch",
        "--workdir", str(tmp_path / "work"), "--report", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "latency.json").read_text())
    from recengine.bench.quality import instruction_sets

    assert report["machine"]["instruction_sets"] == instruction_sets()  # AVX2 / AVX-512 / VNNI / AMX flags
    calls = {r["variant"] for r in report["results"] if r["stage"] == "e2e"}
    for case in ("recommend_user", "recommend_user_fusion", "recommend_history_nofusion", "recommend_history_fusion",
                 "recommend_user_filter_lang", "recommend_user_filter_rare", "recommend_user_long_tail",
                 "recommend_user_diversity", "similar_items", "search", "add_items"):
        assert f"int8/{case}" in calls
    n = report["scale"]["synthetic"]["n_items"]
    assert n == 160 + 200 == report["bundle"]["n_items"]
    assert all(r["n_items"] == n for r in report["results"])
    opened = report["scale"]["open"]
    assert opened["served"]["median"]["open_s"] > 0 and opened["source"]["median"]["rss_mib_steady"] > 0
    assert set(opened["per_million_items"]) >= {"open_s", "rss_mib_steady", "rss_mib_peak", "bundle_mib"}
    assert opened["per_million_items"]["bundle_mib"] > 0
    assert {"e2e_recommend_user_p99_ms", "engine_open_s"} <= set(report["targets"])
    md = (out / "scale.md").read_text()
    assert "Every call, batch 1" in md and "Engine.open and memory" in md and "Per million items" in md
    assert (tmp_path / "work" / "synthetic-200" / "manifest.json").exists()


def test_encode_stage_times_the_reference_recipes(lean_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(lean_bundle), "--stages", "encode", "--variants", "int8,fp32", "--batch", "1",
        "--requests", "3", "--duration", "1", "--warmup", "1", "--no-torch", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["results"] if r["stage"] == "encode"}
    assert {"int8", "fp32", "ref_int8", "ref_fp32"} <= set(rows)
    ratios = {(r["variant"], r["reference"]): r["ratio_p50"] for r in report["reference"]}
    assert ratios[("int8", "ref_int8")] == pytest.approx(rows["int8"]["p50_ms"] / rows["ref_int8"]["p50_ms"],
                                                         rel=0.01)
    assert ("fp32", "ref_fp32") in ratios
    assert report["machine"]["instruction_sets"] is not None
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(lean_bundle), "--stages", "encode", "--variants", "int8", "--batch", "1",
        "--requests", "2", "--duration", "1", "--warmup", "1", "--no-torch", "--no-reference", "--json", str(out),
        "--quiet"])
    assert result.exit_code == 0, result.output
    assert not [r for r in json.loads(out.read_text())["results"] if r["variant"].startswith("ref_")]


def test_the_synthetic_bundle_follows_the_text_index_rule(lean_bundle: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """As the export: a text index only past the scan budget ("auto"), else float16 text rows in a `.npy`."""
    import recengine.retrieval as retrieval
    from recengine.bundle import open_bundle
    from tests.fixtures.hostile_bundles import copy_bundle, edit_manifest

    src = copy_bundle(lean_bundle, tmp_path / "src")
    edit_manifest(src, lambda m: m["config"].update(index={"text": "auto"}))
    small = build_synthetic_bundle(src, tmp_path / "small", 40, seed=1, num_threads=1, recall_queries=20)
    m = open_bundle(small.path).manifest
    assert "text" not in m["index"] and m["items"]["text_embeddings"] == "items/text_embeddings.npy"
    assert np.load(small.path / "items" / "text_embeddings.npy").dtype == np.float16
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 180)  # 200 items are past it
    big = build_synthetic_bundle(src, tmp_path / "big", 40, seed=1, num_threads=1, recall_queries=20)
    b = open_bundle(big.path)
    assert b.manifest["index"]["text"]["count"] == 200
    assert b.manifest["items"]["text_embeddings"] == b.manifest["index"]["text"]["path"]
    assert b.load_npy(b.manifest["items"]["text_embeddings"]).shape == (200, b.manifest["dims"]["text"])
