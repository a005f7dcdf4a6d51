"""Unit tests of the runtime engine's parts that need no bundle: retrieval backends, filters, re-ranking,
the readers-writer lock, tokenizer batching, scene/profile encoding and execution-provider selection."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from recengine.errors import BundleError, DeviceError, RequestError
from recengine.filters import attr_column, build_mask
from recengine.rerank import intra_list_similarity, long_tail_boost, mmr
from recengine.retrieval import (
    ExactBackend,
    HnswBackend,
    OnnxExactBackend,
    choose_backend,
    retrieve,
    topk_rows,
)
from recengine.rwlock import RWLock
from recengine.vocab import SlotVocab


@pytest.fixture(scope="module")
def space():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((2000, 16)).astype(np.float32)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    alive = np.ones(matrix.shape[0], dtype=bool)
    return matrix, queries, alive


def brute(matrix, q, k, ok=None):
    s = matrix @ q
    if ok is not None:
        s = np.where(ok, s, -np.inf)
    return np.argsort(-s, kind="stable")[:k]


def test_topk_rows_sorted_and_exact():
    scores = np.array([[0.1, 0.9, 0.5, -np.inf, 0.7]])
    idx, vals = topk_rows(scores, 3)
    assert idx.tolist() == [[1, 4, 2]]
    assert np.allclose(vals, [[0.9, 0.7, 0.5]])
    idx, _ = topk_rows(scores, 10)
    assert idx.shape == (1, 5)


def test_exact_backend_matches_bruteforce(space):
    matrix, queries, alive = space
    labels, scores = ExactBackend(matrix, alive).search(queries, 10)
    for b, q in enumerate(queries):
        assert labels[b].tolist() == brute(matrix, q, 10).tolist()
        assert np.allclose(scores[b], matrix[labels[b]] @ q, atol=1e-5)


def test_hnsw_backend_recall_and_scores(space):
    matrix, queries, alive = space
    hnsw = HnswBackend.build(matrix, np.arange(matrix.shape[0]), M=16, ef_construction=200, ef=200)
    labels, scores = hnsw.search(queries, 10)
    recall = np.mean([len(set(labels[b]) & set(brute(matrix, q, 10))) / 10 for b, q in enumerate(queries)])
    assert recall >= 0.9
    assert np.allclose(scores, np.einsum("bkd,bd->bk", matrix[labels], queries), atol=1e-4)


def test_mips_augmented_hnsw_keeps_scores_and_recall():
    """The augmented index stores [v, sqrt(M^2-|v|^2)] and searches [q, 0]: scores stay exact inner
    products and a well-built graph finds the true top-k; live adds (even longer vectors) keep working."""
    rng = np.random.default_rng(5)
    matrix = (rng.standard_normal((3000, 16)) * rng.uniform(1.0, 1.8, (3000, 1))).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    aug = HnswBackend.build(matrix, np.arange(matrix.shape[0]), M=16, ef_construction=200, ef=200, augment=True)
    assert aug.spec()["transform"] == "mips_augment" and aug.spec()["dim"] == 17
    labels, scores = aug.search(queries, 10)
    assert np.allclose(scores, np.einsum("bkd,bd->bk", matrix[labels], queries), atol=1e-3)
    recall = np.mean([len(set(labels[b]) & set(brute(matrix, q, 10))) / 10 for b, q in enumerate(queries)])
    assert recall >= 0.95
    grown = np.concatenate([matrix, 10 * queries[:1]])
    aug.refresh(grown, np.ones(grown.shape[0], dtype=bool), added=np.array([3000]))
    assert aug.search(queries[:1], 1)[0][0, 0] == 3000


def test_hnsw_k_larger_than_ef(space):
    matrix, queries, alive = space
    hnsw = HnswBackend.build(matrix, np.arange(matrix.shape[0]), ef=10)
    labels, _ = hnsw.search(queries[:1], 300)  # k > ef must still return k results (hnswlib uses max(ef, k))
    assert labels.shape == (1, 300) and len(set(labels[0].tolist())) == 300


def test_onnx_exact_backend_on_cpu(space):
    pytest.importorskip("onnx")
    matrix, queries, alive = space
    dead = alive.copy()
    dead[brute(matrix, queries[0], 3)] = False
    onnx_b = OnnxExactBackend(matrix, dead, device="cpu", threads=1)
    labels, scores = onnx_b.search(queries, 10)
    exact_labels, exact_scores = ExactBackend(matrix, dead).search(queries, 10)
    assert labels.tolist() == exact_labels.tolist()
    assert np.allclose(scores, exact_scores, atol=1e-4)
    assert not set(labels[0].tolist()) & set(np.flatnonzero(~dead).tolist())


def test_hnsw_add_and_remove_follow_the_catalogue(space):
    matrix, queries, alive = space
    base = matrix[:1000]
    hnsw = HnswBackend.build(base, np.arange(1000), ef=100)
    grown = np.concatenate([base, 10 * queries[:1]])  # a new item that is the best match for query 0
    alive2 = np.ones(1001, dtype=bool)
    hnsw.refresh(grown, alive2, added=np.array([1000]), removed=None)
    labels, _ = hnsw.search(queries[:1], 5)
    assert labels[0, 0] == 1000
    alive2[1000] = False
    hnsw.refresh(grown, alive2, added=None, removed=np.array([1000]))
    labels, _ = hnsw.search(queries[:1], 5)
    assert 1000 not in labels[0]


@pytest.mark.parametrize("fraction", [0.01, 0.5])
def test_retrieve_with_filter_and_exclusions(space, fraction):
    """Small allowed subsets are scanned exactly, large ones over-fetched; both give exact answers here."""
    matrix, queries, alive = space
    rng = np.random.default_rng(1)
    allowed = rng.random(matrix.shape[0]) < fraction
    exact = ExactBackend(matrix, alive)
    hnsw = HnswBackend.build(matrix, np.arange(matrix.shape[0]), ef=400)
    exclude = [brute(matrix, q, 5, allowed) for q in queries]  # drop each query's best 5 allowed items
    for backend in (exact, hnsw):
        got = retrieve(backend, exact, matrix, alive, queries, 10, allowed=allowed, exclude=exclude)
        for b, q in enumerate(queries):
            ok = allowed.copy()
            ok[exclude[b]] = False
            expected = brute(matrix, q, 10, ok)
            assert allowed[got[b].rows].all()
            assert not set(got[b].rows.tolist()) & set(exclude[b].tolist())
            overlap = len(set(got[b].rows.tolist()) & set(expected.tolist()))
            assert overlap >= (10 if backend is exact else 8)


def test_retrieve_respects_tombstones(space):
    matrix, queries, alive = space
    dead = alive.copy()
    best = brute(matrix, queries[0], 20)
    dead[best] = False
    exact = ExactBackend(matrix, dead)
    got = retrieve(exact, exact, matrix, dead, queries[:1], 10)
    assert not set(got[0].rows.tolist()) & set(best.tolist())


def test_choose_backend_rules():
    assert choose_backend("auto", "cpu", 10_000) == "exact"
    assert choose_backend("auto", "cpu", 10_000, batch=8) == "hnsw"
    assert choose_backend("auto", "cpu", 1_000_000) == "hnsw"
    assert choose_backend("auto", "cpu", 100_000, has_hnsw=False) == "exact"
    assert choose_backend("auto", "cuda", 1_000_000) == "onnx"
    assert choose_backend("auto", "cuda", 1_000, batch=64) == "onnx"
    assert choose_backend("auto", "cuda", 1_000, batch=1) == "exact"
    assert choose_backend("auto", "cuda", 1_000_000, onnx_ok=False) == "hnsw"
    assert choose_backend("hnsw", "cpu", 10) == "hnsw"
    # the exact scan's cost grows with the width: a 384-wide space switches at 64/384 of the items
    assert choose_backend("auto", "cpu", 10_000, dim=64) == "exact"
    assert choose_backend("auto", "cpu", 10_000, dim=384) == "hnsw"
    assert choose_backend("auto", "cpu", 3_000, dim=384) == "exact"
    assert choose_backend("auto", "cuda", 10_000, dim=384) == "onnx"  # the wide space's scan goes to the GPU
    assert choose_backend("hnsw", "cpu", 10, has_hnsw=False) == "exact"
    with pytest.raises(RequestError, match="retrieval must be one of"):
        choose_backend("faiss", "cpu", 10)


def test_inner_products_match_matmul():
    from recengine.scan import inner_products

    rng = np.random.default_rng(3)
    for n in (100, 5000):
        m = rng.standard_normal((n, 24)).astype(np.float32)
        q = rng.standard_normal((3, 24)).astype(np.float32)
        assert np.allclose(inner_products(q, m), q @ m.T, atol=1e-4)


def test_filters_ids_and_attributes():
    row_of = {f"i{r}": r for r in range(6)}
    attrs = {
        "attr_year": attr_column([1990, 1995, None, 2005, 2010, 1999]),
        "attr_genre": attr_column(["Comedy|Drama", "Drama", "Comedy", None, "Action", "Comedy"]),
    }
    assert build_mask(None, row_of, attrs, 6) is None
    assert build_mask({"ids": ["i1", "i3", "nope"]}, row_of, attrs, 6).tolist() == [0, 1, 0, 1, 0, 0]
    assert build_mask({"year": {"gte": 1995, "lt": 2010}}, row_of, attrs, 6).tolist() == [0, 1, 0, 1, 0, 1]
    assert build_mask({"attr_genre": "Comedy"}, row_of, attrs, 6).tolist() == [0, 0, 1, 0, 0, 1]
    assert build_mask({"genre": {"contains": "Comedy"}}, row_of, attrs, 6).tolist() == [1, 0, 1, 0, 0, 1]
    assert build_mask({"genre": ["Drama", "Action"]}, row_of, attrs, 6).tolist() == [0, 1, 0, 0, 1, 0]
    both = build_mask({"genre": {"contains": "Comedy"}, "year": {"lt": 1998}}, row_of, attrs, 6)
    assert both.tolist() == [1, 0, 0, 0, 0, 0]
    with pytest.raises(RequestError, match="unknown attribute 'colour'"):
        build_mask({"colour": "red"}, row_of, attrs, 6)
    with pytest.raises(RequestError, match="needs a numeric attribute"):
        build_mask({"genre": {"gt": 3}}, row_of, attrs, 6)
    with pytest.raises(RequestError, match="unknown operator"):
        build_mask({"year": {"between": 3}}, row_of, attrs, 6)
    with pytest.raises(RequestError, match="must be a mapping"):
        build_mask(["i1"], row_of, attrs, 6)


def test_long_tail_boost_prefers_unpopular():
    scores = np.array([3.0, 2.9, 2.8, 2.7])
    pop = np.array([1000, 500, 3, 0])
    assert np.argmax(long_tail_boost(scores, pop, 0.0)) == 0
    top2_pop = [pop[np.argsort(-long_tail_boost(scores, pop, s))[:2]].mean() for s in (0.0, 1.0, 4.0)]
    assert top2_pop[0] >= top2_pop[1] >= top2_pop[2] and top2_pop[2] < top2_pop[0]
    assert np.argmax(long_tail_boost(scores, pop, 4.0)) in (2, 3)
    assert np.array_equal(long_tail_boost(scores, pop, 0.0), scores)


def test_mmr_diversifies():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(8)
    near = base + 0.01 * rng.standard_normal((10, 8))  # 10 near-duplicates
    far = rng.standard_normal((10, 8))
    vecs = np.concatenate([near, far])
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    scores = np.concatenate([np.linspace(2.0, 1.9, 10), np.linspace(1.5, 1.0, 10)])
    plain = mmr(scores, unit, 5, 0.0)
    diverse = mmr(scores, unit, 5, 0.7)
    assert plain.tolist() == [0, 1, 2, 3, 4]
    assert diverse[0] == 0 and len(set(diverse.tolist())) == 5
    assert intra_list_similarity(unit[diverse]) < intra_list_similarity(unit[plain])


def test_rwlock_excludes_writers_from_readers():
    lock = RWLock()
    state = {"readers": 0, "max_readers": 0, "violations": 0}
    guard = threading.Lock()

    def reader():
        for _ in range(200):
            with lock.read():
                with guard:
                    state["readers"] += 1
                    state["max_readers"] = max(state["max_readers"], state["readers"])
                time.sleep(0.0001)
                with guard:
                    state["readers"] -= 1

    def writer():
        for _ in range(50):
            with lock.write():
                with guard:
                    if state["readers"]:
                        state["violations"] += 1
                time.sleep(0.0001)

    threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert state["violations"] == 0
    assert state["max_readers"] >= 2  # readers really overlap


def test_slot_vocab_encoding():
    node = {"columns": ["ctx_daypart", "ctx_temp"], "values": {"ctx_daypart": ["<unk>", "evening", "morning"]},
            "numeric_edges": {"ctx_temp": [0.0, 10.0]}}
    vocab = SlotVocab.from_manifest("scene", "ctx_", node, 2)
    assert vocab.encode({"daypart": "morning", "ctx_temp": 5}).tolist() == [2, 2]
    assert vocab.encode({"daypart": "noon", "temp": -3}).tolist() == [0, 1]
    assert vocab.encode(None).tolist() == [0, 0]
    with pytest.raises(RequestError, match="unknown scene key 'weather'.*daypart, temp"):
        vocab.encode({"weather": "rain"})
    with pytest.raises(RequestError, match="must be a number"):
        vocab.encode({"temp": "warm"})
    empty = SlotVocab.from_manifest("scene", "ctx_", {"columns": [], "values": {}}, 1)
    assert empty.encode({}).tolist() == [0]
    with pytest.raises(RequestError, match="unknown scene key"):
        empty.encode({"daypart": "x"})
    with pytest.raises(BundleError, match="dims.scene_slots"):
        SlotVocab.from_manifest("scene", "ctx_", node, 3)


def test_tokenizer_pads_to_longest_and_truncates(lean_bundle):
    from recengine.tokenize import TextTokenizer

    tok = TextTokenizer(lean_bundle / "tokenizer.json", max_length=8)
    batch = tok.encode(["a movie", "a much longer movie title about the toy story of space cowboys"])
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    assert batch.shape[1] == 8  # truncated at max_length, padded to the longest
    assert batch.attention_mask[0].sum() < 8 and batch.attention_mask[1].sum() == 8
    assert (batch.input_ids[0][batch.attention_mask[0] == 0] == tok.pad_id).all()
    short = tok.encode(["a", "b"])
    assert short.shape[1] < 8
    assert tok.encode(["a"], pad_to=16).shape == (1, 16)
    with pytest.raises(RequestError):
        tok.encode("not a list")
    with pytest.raises(RequestError):
        tok.encode([3])
    with pytest.raises(BundleError):
        TextTokenizer(lean_bundle / "manifest.json", max_length=8)  # JSON, but not a tokenizer


class _FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return self._providers

    def get_inputs(self):
        return []

    def get_outputs(self):
        return []


def test_provider_selection_and_fallback(monkeypatch, tmp_path):
    import onnxruntime as ort

    from recengine import sessions

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert sessions.resolve_device("auto") == "cpu"
    assert sessions.resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider"):
        sessions.resolve_device("cuda")
    with pytest.raises(RequestError, match="device must be one of"):
        sessions.resolve_device("tpu")

    # CUDA listed, but the session silently lands on the CPU (mismatched CUDA libraries).
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sessions.resolve_device("auto") == "cuda"
    created = []

    def fake_session(path, sess_options=None, providers=None):
        created.append(providers)
        return _FakeSession(["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    with pytest.raises(DeviceError, match="created the m session on CPUExecutionProvider"):
        sessions.make_session("m", tmp_path / "m.onnx", "cuda", sessions.SessionConfig(device="cuda"))
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        s = sessions.make_session("m", tmp_path / "m.onnx", "cuda", sessions.SessionConfig(device="auto"))
    assert s.provider == "CPUExecutionProvider"
    assert created[-1] == ["CPUExecutionProvider"]
    cuda_opts = dict(created[0][0][1])
    assert cuda_opts["gpu_mem_limit"] == str(2 * 1024**3)

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **kw: _FakeSession(both))
    s = sessions.make_session("m", tmp_path / "m.onnx", "cuda", sessions.SessionConfig(device="cuda"))
    assert s.provider == "CUDAExecutionProvider"


def test_session_options_are_explicit():
    import onnxruntime as ort

    from recengine.sessions import SessionConfig, session_options

    opts = session_options(SessionConfig(threads=2))
    assert opts.intra_op_num_threads == 2
    assert opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with pytest.raises(RequestError):
        session_options(SessionConfig(threads=0))
