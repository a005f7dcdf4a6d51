"""The runtime Engine against a complete bundle: `lean_bundle` (written without torch, tests/fixtures/lean_bundle.py)
for everything the runtime does, `tiny_bundle` (the torch export: quick profile, tiny encoder, ml_tiny) for
what only an exported bundle can show (parity record, the export's index form; skipped without torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from recengine.bundle import open_bundle
from recengine.errors import BundleError, RequestError
from recengine.rerank import intra_list_similarity

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine(lean_bundle):
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1)


@pytest.fixture(scope="module")
def fp32(lean_bundle):
    """fp32 models, exact retrieval, no fusion: scores are plain inner products we can recompute."""
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact", rescore=False)


@pytest.fixture(scope="module")
def fused(lean_bundle):
    """fp32 models, exact retrieval, fusion head on (whatever the manifest's use_by_default says)."""
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact", rescore=True)


@pytest.fixture(scope="module")
def arrays(lean_bundle):
    reader = open_bundle(lean_bundle)
    items, users = reader.section("items"), reader.section("users")
    return {
        "item_ids": reader.load_json(items["ids"]),
        "texts": reader.load_json(items["texts"]),
        "vectors": reader.load_npy(items["vectors"]),
        "text_vectors": reader.load_npy(items["text_vectors"]),
        "text_embeddings": reader.load_npy(items["text_embeddings"]),
        "popularity": reader.load_npy(items["popularity"]),
        "user_ids": reader.load_json(users["ids"]),
        "user_vectors": reader.load_npy(users["vectors"]),
        "indptr": reader.load_npy(users["history_indptr"]),
        "hist": reader.load_npy(users["history_items"]),
        "manifest": reader.manifest,
        "cooccur_indices": reader.load_npy(reader.manifest["cooccur"]["indices"]),
        "cooccur_scores": reader.load_npy(reader.manifest["cooccur"]["scores"]),
    }


def seen_ids(arrays, u: int) -> set[str]:
    rows = arrays["hist"][arrays["indptr"][u] : arrays["indptr"][u + 1]]
    return {arrays["item_ids"][r] for r in rows}


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- basics


def test_engine_modules_import_without_torch():
    code = (
        "import sys, recengine, recengine.engine, recengine.cli.serve, recengine.persist\n"
        "from recengine import Engine, Recommendation\n"
        "bad = [m for m in ('torch', 'transformers', 'pandas', 'peft') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_open_reports_provider_and_variants(engine, lean_bundle, arrays):
    assert engine.provider == "CPUExecutionProvider"
    assert engine.device == "cpu"
    variants = arrays["manifest"]["models"]["encoder"]["variants"]
    assert engine.variants["encoder"] == ("int8" if "int8" in variants else "fp32")
    assert engine.n_items == len(arrays["item_ids"]) and engine.n_users == len(arrays["user_ids"])
    assert "CPUExecutionProvider" in repr(engine)


@pytest.mark.parametrize("variant", ["int8", "fp16"])
def test_every_variant_opens_and_tracks_fp32(lean_bundle, arrays, variant):
    """Each variant passes the model IO check at open and stays close to the fp32 graphs."""
    from recengine import Engine

    eng = Engine.open(lean_bundle, device="cpu", threads=1, variant=variant, retrieval="exact", rescore=False)
    assert eng.variants == {"encoder": variant, "user_tower": variant, "fusion": variant}
    emb, _ = eng.stages().encode(arrays["texts"][:16])
    cos = np.einsum("ij,ij->i", emb, arrays["text_embeddings"][:16])
    assert cos.min() > (0.999 if variant == "int8" else 0.99999)
    users = eng.stages().user_tower(arrays["user_ids"][:8])
    assert np.abs(users - arrays["user_vectors"][:8]).max() < (0.05 if variant == "int8" else 2e-3)


def test_open_rejects_bad_arguments(lean_bundle):
    from recengine import Engine

    with pytest.raises(RequestError, match="device must be one of"):
        Engine.open(lean_bundle, device="tpu")
    with pytest.raises(RequestError, match="retrieval must be one of"):
        Engine.open(lean_bundle, retrieval="faiss")
    with pytest.raises(RequestError, match="variant must be one of"):
        Engine.open(lean_bundle, variant="int4")
    with pytest.raises(RequestError, match="threads"):
        Engine.open(lean_bundle, threads=0)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_missing_onnxruntime_names_the_extra(lean_bundle, monkeypatch):
    from recengine import DependencyError, Engine

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(DependencyError, match=r"recengine\[cpu\]"):
        Engine.open(lean_bundle, device="cpu")


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_cuda_without_cuda_fails_loudly_and_auto_falls_back(lean_bundle, monkeypatch):
    import onnxruntime as ort

    from recengine import DeviceError, Engine

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a real CUDA provider is present")
    with pytest.raises(DeviceError):
        Engine.open(lean_bundle, device="cuda")
    # ORT lists CUDA but sessions land on the CPU (mismatched libraries): cuda fails, auto warns + CPU.
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(DeviceError, match="CUDA"):
        Engine.open(lean_bundle, device="cuda")
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        eng = Engine.open(lean_bundle, device="auto", retrieval="exact")
    assert eng.provider == "CPUExecutionProvider" and eng.device == "cpu"
    assert len(eng.recommend(user_id=eng.user_ids()[0], k=3)) == 3


# ----------------------------------------------------------------------------- parity with export


def test_fp32_user_tower_reproduces_stored_user_vectors(fp32, arrays):
    """users/vectors.npy was computed at export time; the runtime's fp32 user tower must agree."""
    stages = fp32.stages()
    users = arrays["user_ids"][:8]
    got = stages.user_tower(users)
    want = arrays["user_vectors"][:8]
    assert np.abs(got - want).max() < 1e-4


def test_fp32_encoder_reproduces_export_text_vectors(fp32, arrays):
    """items/text_embeddings.npy and text_vectors.npy were computed at export time."""
    texts = arrays["texts"][:16]
    emb, vec = fp32.stages().encode(texts)
    assert np.abs(emb - arrays["text_embeddings"][:16]).max() < 1e-4
    assert np.abs(vec - arrays["text_vectors"][:16]).max() < 1e-4


def test_bucket_padding_leaves_encoder_outputs_unchanged(fp32, arrays):
    """The GPU path pads batches to (batch, sequence) buckets for CUDA graphs; padding must not change
    the real rows (checked on the CPU with the same models)."""
    models = fp32._state.models
    texts = arrays["texts"][:3]
    feeds = models.bucketed_inputs(texts)
    assert feeds["input_ids"].shape[0] == 4 and feeds["input_ids"].shape[1] in (16, 32, 64, 128, 256, 512,
                                                                                 models.tokenizer.max_length)
    emb, vec = models.encoder.run(feeds, ["text_embedding", "item_vector"])
    ref_emb, ref_vec = models.encode_batch(texts)
    assert np.abs(emb[:3] - ref_emb).max() < 1e-5 and np.abs(vec[:3] - ref_vec).max() < 1e-5


def cooccur_reference(arrays, u: int) -> np.ndarray:
    """The co-occurrence term of user `u`'s scores as docs/bundle.md `cooccur` defines it, by plain loops:
    weight * c(i) / max c, c(i) = sum over the last max_history items h_t of decay^(age) * sim(h_t, i)."""
    spec = arrays["manifest"]["cooccur"]
    idx, sim = arrays["cooccur_indices"], arrays["cooccur_scores"].astype(np.float64)
    hist = arrays["hist"][arrays["indptr"][u] : arrays["indptr"][u + 1]][-spec["max_history"]:]
    c = np.zeros(len(arrays["item_ids"]))
    for age, h in enumerate(hist[::-1]):
        for j, s in zip(idx[h], sim[h]):
            if j >= 0:
                c[j] += spec["decay"] ** age * s
    top = c.max()
    # items without a list (nobody interacted with them) get the stand-in: interpolated similarity at the
    # cosine of their item vector (from their text) to each history item's, nothing below the map's first point
    emb = arrays["vectors"].astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tm = spec["text_map"]
    for i in np.flatnonzero(idx[:, 0] < 0):
        for age, h in enumerate(hist[::-1]):
            cos = float(emb[i] @ emb[h])
            if cos >= tm["cos"][0]:
                c[i] += spec["decay"] ** age * float(np.interp(cos, tm["cos"], tm["sim"]))
    return spec["weight"] * c / top if top > 0 else c


def test_scores_equal_inner_products_for_fixed_users(fp32, arrays):
    """Without fusion, exact retrieval: the served list is the top-k of u.v plus the co-occurrence term over
    unseen items."""
    for u in range(5):
        user = arrays["user_ids"][u]
        got = fp32.recommend(user_id=user, k=10)
        scores = arrays["vectors"] @ arrays["user_vectors"][u] + cooccur_reference(arrays, u)
        seen = [arrays["item_ids"].index(i) for i in seen_ids(arrays, u)]
        scores[seen] = -np.inf
        top = np.argsort(-scores, kind="stable")[:10]
        assert [r.item_id for r in got] == [arrays["item_ids"][i] for i in top]
        assert np.allclose([r.score for r in got], scores[top], atol=1e-4)


def test_fusion_scores_match_the_fusion_model(fused, arrays, lean_bundle):
    """Served scores = the fp32 fusion ONNX model over the retrieved candidates (inputs assembled by hand
    from the bundle arrays). That the exported ONNX models match torch is `test_export_records_parity`."""
    import onnxruntime as ort

    reader = open_bundle(lean_bundle)
    manifest = reader.manifest
    sess = ort.InferenceSession(str(reader.path(manifest["models"]["fusion"]["variants"]["fp32"]["path"])),
                                providers=["CPUExecutionProvider"])
    feats = reader.load_npy(manifest["items"]["item_feats"])
    pop_bucket = reader.load_npy(manifest["items"]["pop_bucket"])
    dims = manifest["dims"]
    for u in range(4):
        user = arrays["user_ids"][u]
        got = fused.recommend(user_id=user, k=10, candidates=50)
        scores = arrays["vectors"] @ arrays["user_vectors"][u]
        scores[[arrays["item_ids"].index(i) for i in seen_ids(arrays, u)]] = -np.inf
        cands = np.argsort(-scores, kind="stable")[:50]
        co = cooccur_reference(arrays, u)  # the co-occurrence source adds its 50 best unseen items not there yet
        co[[arrays["item_ids"].index(i) for i in seen_ids(arrays, u)]] = 0.0
        co[cands] = 0.0
        extra = np.flatnonzero(co > 0)
        cands = np.concatenate([cands, np.sort(extra[np.argsort(-co[extra], kind="stable")[:50]])])
        (fs,) = sess.run(["scores"], {
            "user": arrays["user_vectors"][u][None].astype(np.float32),
            "items": arrays["vectors"][cands][None].astype(np.float32),
            "item_feats": feats[cands][None].astype(np.float32),
            "pop_bucket": pop_bucket[cands][None].astype(np.int64),
            "scene": np.zeros((1, dims["scene_slots"]), np.int64),
            "profile": reader.load_npy(manifest["users"]["profile"])[u][None].astype(np.int64),
        })
        blended = fs[0] + cooccur_reference(arrays, u)[cands]
        order = np.argsort(-blended, kind="stable")[:10]
        assert [r.item_id for r in got] == [arrays["item_ids"][i] for i in cands[order]]
        assert np.allclose([r.score for r in got], blended[order], atol=1e-4)


def test_fused_batch_equals_single(fused, arrays):
    reqs = [{"user_id": u, "k": 6, "candidates": 30 + 5 * i} for i, u in enumerate(arrays["user_ids"][:5])]
    reqs.append({"history": arrays["item_ids"][10:14], "k": 6})
    for req, got in zip(reqs, fused.recommend_batch(reqs)):
        single = fused.recommend(**req)
        assert [r.item_id for r in got] == [r.item_id for r in single]
        assert np.allclose([r.score for r in got], [r.score for r in single], atol=1e-4)


def test_retrieval_backends_agree(lean_bundle, fp32, arrays):
    """The ONNX Gemm+TopK graph (the GPU backend, run here on the CPU) is exact; HNSW approximate."""
    from recengine import Engine

    pytest.importorskip("onnx")
    onnx_engine = Engine.open(lean_bundle, device="cpu", variant="fp32", retrieval="onnx", rescore=False)
    hnsw_engine = Engine.open(lean_bundle, device="cpu", variant="fp32", retrieval="hnsw", rescore=False, ef=200)
    assert onnx_engine.retrieval_backend() == "onnx" and hnsw_engine.retrieval_backend() == "hnsw"
    overlap = []
    for user in arrays["user_ids"][:10]:
        want = [r.item_id for r in fp32.recommend(user_id=user, k=10)]
        assert [r.item_id for r in onnx_engine.recommend(user_id=user, k=10)] == want
        overlap.append(len(set(want) & {r.item_id for r in hnsw_engine.recommend(user_id=user, k=10)}) / 10)
    assert np.mean(overlap) >= 0.8  # a plain inner-product graph misses some (see the augmented test)
    text = arrays["texts"][7]
    assert onnx_engine.search(text, k=1)[0].item_id == fp32.search(text, k=1)[0].item_id


def test_indexes_are_served_as_stored(lean_bundle):
    """No rebuild on first use: the engine serves the index form the bundle stores (item: augmented,
    text: plain unit vectors), from the moment it is open."""
    from recengine import Engine

    eng = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")
    items, text = eng.index_forms()
    assert items == "mips_augment" and text == "plain_ip"
    eng.warmup()
    assert eng.index_forms() == (items, text)


def test_int8_engine_agrees_with_fp32(engine, fp32, arrays):
    """INT8 models change scores slightly; the top of the list should mostly agree."""
    overlaps = []
    for user in arrays["user_ids"][:10]:
        a = {r.item_id for r in engine.recommend(user_id=user, k=20, history=None)}
        b = {r.item_id for r in fp32.recommend(user_id=user, k=20)}
        overlaps.append(len(a & b) / 20)
    assert np.mean(overlaps) > 0.3


# ----------------------------------------------------------------------------- recommend


def test_recommend_known_user(engine, arrays):
    user = arrays["user_ids"][0]
    recs = engine.recommend(user_id=user, k=10)
    ids = [r.item_id for r in recs]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not set(ids) & seen_ids(arrays, 0)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert recs.source == "stored" and all(r.reason is None for r in recs)
    with_seen = engine.recommend(user_id=user, k=50, exclude_seen=False, candidates=400)
    assert {r.item_id for r in with_seen} & seen_ids(arrays, 0)


def test_recommend_from_history_skips_unknown_ids(engine, arrays):
    history = arrays["item_ids"][:5] + ["no-such-item", "another"]
    before = engine.stats["unknown_history_items"]
    recs = engine.recommend(history=history, k=5)
    assert recs.source == "history" and recs.skipped == ("no-such-item", "another")
    assert engine.stats["unknown_history_items"] == before + 2
    assert len(recs) == 5 and not {r.item_id for r in recs} & set(history)


def test_cold_paths(engine, arrays):
    pop = engine.recommend(user_id="never-seen-user", k=5)
    assert pop.source == "popular" and len(pop) == 5
    top_pop = np.argsort(-arrays["popularity"], kind="stable")[:5]
    assert [arrays["popularity"][arrays["item_ids"].index(r.item_id)] for r in pop] == \
        [arrays["popularity"][i] for i in top_pop]
    scene_cols = arrays["manifest"]["vocab"]["scene"]["columns"]
    if scene_cols:
        col = scene_cols[0]
        value = arrays["manifest"]["vocab"]["scene"]["values"][col][1]
        cold = engine.recommend(user_id="never-seen-user", scene={col.removeprefix("ctx_"): value}, k=5)
        assert cold.source == "cold" and len(cold) == 5
        known = engine.recommend(user_id=arrays["user_ids"][0], scene={col: value}, k=5)
        assert known.source == "history" and len(known) == 5
    empty = engine.recommend(history=["no-such-item"], k=3)
    assert empty.source == "popular" and len(empty) == 3


def test_filter_by_ids_and_small_subset(engine, arrays):
    user = arrays["user_ids"][1]
    allowed = [i for i in arrays["item_ids"] if i not in seen_ids(arrays, 1)][:7]
    recs = engine.recommend(user_id=user, k=5, filter={"ids": allowed})
    assert len(recs) == 5 and {r.item_id for r in recs} <= set(allowed)
    big = [i for i in arrays["item_ids"][::2]]
    recs = engine.recommend(user_id=user, k=10, filter={"ids": big})
    assert len(recs) == 10 and {r.item_id for r in recs} <= set(big)
    with pytest.raises(RequestError, match="unknown attribute"):
        engine.recommend(user_id=user, filter={"attr_colour": "red"})


def test_long_tail_lowers_popularity(engine, arrays):
    pop = dict(zip(arrays["item_ids"], arrays["popularity"].tolist()))
    plain, boosted = [], []
    for user in arrays["user_ids"][:10]:
        plain += [pop[r.item_id] for r in engine.recommend(user_id=user, k=10)]
        boosted += [pop[r.item_id] for r in engine.recommend(user_id=user, k=10, long_tail=3.0)]
    assert np.mean(boosted) < np.mean(plain)


def test_diversity_lowers_intra_list_similarity(engine, arrays):
    vecs = arrays["vectors"] / np.linalg.norm(arrays["vectors"], axis=1, keepdims=True)
    row = {i: r for r, i in enumerate(arrays["item_ids"])}
    plain, diverse = [], []
    for user in arrays["user_ids"][:10]:
        a = [row[r.item_id] for r in engine.recommend(user_id=user, k=10)]
        b = [row[r.item_id] for r in engine.recommend(user_id=user, k=10, diversity=0.7)]
        plain.append(intra_list_similarity(vecs[a]))
        diverse.append(intra_list_similarity(vecs[b]))
    assert np.mean(diverse) < np.mean(plain)


def test_explanations_name_history_items(engine, arrays):
    recs = engine.recommend(user_id=arrays["user_ids"][2], k=5, explain=True)
    assert all(r.reason and "in your history" in r.reason for r in recs)
    cold = engine.recommend(user_id="nobody", k=3, explain=True)
    assert all(r.reason.startswith("popular") for r in cold)


def test_batch_equals_single(fp32, arrays):
    """With exact retrieval a batch gives exactly the single-request answers (the auto backend may
    switch to HNSW for batches, which is approximate)."""
    from recengine.engine import RecommendRequest

    engine = fp32

    reqs = [RecommendRequest(user_id=u, k=7) for u in arrays["user_ids"][:6]]
    reqs.append(RecommendRequest(history=arrays["item_ids"][3:9], k=7))
    reqs.append({"user_id": "unknown-user", "k": 4})
    reqs.append({"user_id": arrays["user_ids"][0], "k": 5, "filter": {"ids": arrays["item_ids"][:40]}})
    batch = engine.recommend_batch(reqs)
    for req, got in zip(reqs, batch):
        kwargs = req if isinstance(req, dict) else req.__dict__
        single = engine.recommend(**kwargs)
        assert [r.item_id for r in got] == [r.item_id for r in single]
        assert np.allclose([r.score for r in got], [r.score for r in single], atol=1e-4)
    with pytest.raises(RequestError, match="unknown fields"):
        engine.recommend_batch([{"user": "1"}])


def test_independent_batch_gives_each_request_its_lone_answer(lean_bundle, arrays, monkeypatch):
    """`recommend_batch(independent=True)` (what the server's coalescing uses): every answer equals the lone
    `recommend` call, on the INT8 models with the fusion head, even where a batch of that size would go to
    HNSW (the scan budget lowered so that one query is scanned and two are not)."""
    from recengine import Engine, retrieval

    engine = Engine.open(lean_bundle, device="cpu", threads=1, variant="int8", rescore=True)
    assert engine.uses_fusion
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", engine.n_items)
    hnsw_calls = []
    plain_search = retrieval.HnswBackend.search
    monkeypatch.setattr(retrieval.HnswBackend, "search",
                        lambda self, q, k: hnsw_calls.append(len(q)) or plain_search(self, q, k))
    ids = arrays["item_ids"]
    reqs = [{"user_id": u, "k": 7} for u in arrays["user_ids"][:5]]
    reqs += [{"history": ids[3:5], "k": 6}, {"history": ids[20:41], "k": 6, "scene": {"daypart": "evening"}},
             {"user_id": arrays["user_ids"][6], "k": 5, "filter": {"ids": ids[:40]}},
             {"user_id": "unknown-user", "k": 4}, {"history": ids[50:53], "k": 8, "long_tail": 0.5}]
    lone = [engine.recommend(**r) for r in reqs]
    assert not hnsw_calls  # one query: the exact scan
    together = engine.recommend_batch(reqs, independent=True)
    assert not hnsw_calls  # still the exact scan, for all of them at once
    for want, got in zip(lone, together):
        assert got.source == want.source
        assert [r.item_id for r in got] == [r.item_id for r in want]
        assert np.allclose([r.score for r in got], [r.score for r in want], rtol=1e-5, atol=1e-5)
    engine.recommend_batch(reqs)
    assert hnsw_calls  # the plain batch does take the index at this budget: the check above can fail


def test_independent_batch_searches_an_index_per_request(tmp_path, monkeypatch):
    """Past the scan budget every query goes to HNSW, whose search depth follows the fetch (max k, exclusions):
    `independent=True` searches each request on its own, so coalescing never changes an approximate answer.
    A 3,000-item bundle at a low ef, where a shared search does change answers (checked)."""
    from recengine import Engine, retrieval
    from tests.fixtures.lean_bundle import LeanSpec, write_lean_bundle

    bundle = write_lean_bundle(tmp_path / "b", LeanSpec(n_items=3000, n_users=40, n_cold=50))
    engine = Engine.open(bundle, device="cpu", threads=1, variant="fp32", rescore=False, ef=12)
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 0)
    assert engine.retrieval_backend(1) == "hnsw"
    users, items = engine.user_ids(), engine.item_ids()
    reqs = [{"user_id": u, "k": 5 + (i % 3) * 20, "candidates": 10 + 40 * (i % 2)} for i, u in enumerate(users[:20])]
    reqs.append({"history": items[:300], "k": 10})
    lone = [[r.item_id for r in engine.recommend(**q)] for q in reqs]
    together = [[r.item_id for r in got] for got in engine.recommend_batch(reqs, independent=True)]
    assert together == lone
    shared = [[r.item_id for r in got] for got in engine.recommend_batch(reqs)]
    assert shared != lone  # one shared index search does differ here: the check above can fail


def test_a_refused_batch_counts_nothing(engine, arrays):
    before = dict(engine.stats)
    with pytest.raises(RequestError):
        engine.recommend_batch([{"history": ["not-an-item", arrays["item_ids"][0]], "k": 3},
                                {"user_id": arrays["user_ids"][0], "k": 0}], independent=True)
    assert engine.stats == before  # the first request's unknown item is not counted: the call failed


@pytest.mark.parametrize("strategy", ["average", "least_misery", "max_pleasure"])
def test_group_recommendation(engine, arrays, strategy):
    group = arrays["user_ids"][:3]
    recs = engine.recommend_group(group, strategy=strategy, k=8)
    assert len(recs) == 8 and len({r.item_id for r in recs}) == 8
    seen = set().union(*(seen_ids(arrays, u) for u in range(3)))
    assert not {r.item_id for r in recs} & seen
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_group_strategies_differ_and_validate(engine, arrays):
    group = arrays["user_ids"][:4]
    lists = {s: [r.item_id for r in engine.recommend_group(group, strategy=s, k=10)]
             for s in ("average", "least_misery", "max_pleasure")}
    assert len({tuple(v) for v in lists.values()}) >= 2
    with pytest.raises(RequestError, match="strategy"):
        engine.recommend_group(group, strategy="dictator")
    partly = engine.recommend_group([group[0], "ghost"], k=3)
    assert partly.skipped == ("ghost",) and len(partly) == 3


def test_similar_items_rank_by_cosine(engine, arrays, monkeypatch):
    vecs = arrays["vectors"] / np.linalg.norm(arrays["vectors"], axis=1, keepdims=True)
    item = arrays["item_ids"][5]
    got = engine.similar_items(item, k=8)
    cos = vecs @ vecs[5]
    cos[5] = -np.inf
    top = np.argsort(-cos, kind="stable")[:8]
    assert [r.item_id for r in got] == [arrays["item_ids"][i] for i in top]
    assert np.allclose([r.score for r in got], cos[top], atol=1e-5)
    # the large-catalogue path (index candidates, cosine re-rank) agrees closely
    import recengine.neighbours as neighbours_module

    monkeypatch.setattr(neighbours_module, "EXACT_BUDGET", 0)
    big = engine.similar_items(item, k=8)
    assert item not in {r.item_id for r in big}
    assert [r.score for r in big] == sorted((r.score for r in big), reverse=True)
    assert len({r.item_id for r in big} & {r.item_id for r in got}) >= 6
    only = engine.similar_items(item, k=3, filter={"ids": arrays["item_ids"][100:110]})
    assert {r.item_id for r in only} <= set(arrays["item_ids"][100:110])


def test_similar_and_search(engine, arrays):
    item = arrays["item_ids"][0]
    sims = engine.similar_items(item, k=5)
    assert len(sims) == 5 and item not in {r.item_id for r in sims}
    with pytest.raises(RequestError, match="unknown item_id"):
        engine.similar_items("no-such-item")
    # An item's own text is its nearest neighbour in the text space.
    hits = 0
    for i in range(0, 40, 4):
        res = engine.search(arrays["texts"][i], k=3)
        hits += arrays["item_ids"][i] in {r.item_id for r in res}
    assert hits >= 8
    assert engine.search("toy story", k=4)[0].score <= 1.0001


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be between"),
        ({"k": "5"}, "k must be an integer"),
        ({"k": True}, "k must be an integer"),
        ({"user_id": 5}, "user_id must be a string"),
        ({"history": "1"}, "history must be a list"),
        ({"history": [1, 2]}, r"history\[0\] must be a string"),
        ({"scene": {"weather": "rain"}}, "unknown scene key 'weather'"),
        ({"diversity": 2.0}, "diversity must be between"),
        ({"long_tail": -1}, "long_tail must be between"),
        ({"candidates": 0}, "candidates must be between"),
        ({"filter": ["1"]}, "filter must be a mapping"),
    ],
)
def test_bad_requests_raise_request_error(engine, arrays, kwargs, message):
    args = {"user_id": arrays["user_ids"][0], **kwargs}
    with pytest.raises(RequestError, match=message):
        engine.recommend(**args)
    assert len(engine.recommend(user_id=arrays["user_ids"][0], k=3)) == 3  # still usable


def test_bad_search_and_similar(engine):
    with pytest.raises(RequestError, match="empty"):
        engine.search("   ")
    with pytest.raises(RequestError, match="must be a string"):
        engine.search(42)
    with pytest.raises(RequestError, match="item_id must be a string"):
        engine.similar_items(7)
    with pytest.raises(RequestError, match="k must be"):
        engine.similar_items(engine.item_ids()[0], k=-1)


def test_corrupted_tampered_and_versioned_bundles(lean_bundle, tmp_path):
    from recengine import Engine

    bad = copy_bundle(lean_bundle, tmp_path / "tampered")
    with (bad / "items" / "vectors.npy").open("r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="items/vectors.npy"):
        Engine.open(bad)

    missing = copy_bundle(lean_bundle, tmp_path / "missing")
    (missing / "index" / "items.hnsw").unlink()
    with pytest.raises(BundleError, match="missing file index/items.hnsw"):
        Engine.open(missing)

    version = copy_bundle(lean_bundle, tmp_path / "version")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["format_version"] = "9.0"
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 9.0"):
        Engine.open(version)

    garbled = copy_bundle(lean_bundle, tmp_path / "garbled")
    (garbled / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="corrupted manifest"):
        Engine.open(garbled)

    with pytest.raises(BundleError, match="no such bundle"):
        Engine.open(tmp_path / "nothing-here")


def test_unverified_open_still_catches_garbled_model(lean_bundle, tmp_path):
    from recengine import Engine

    bad = copy_bundle(lean_bundle, tmp_path / "garbled-model")
    manifest = json.loads((bad / "manifest.json").read_text())
    rel = manifest["models"]["encoder"]["variants"]["fp32"]["path"]
    (bad / rel).write_bytes(b"this is not an onnx model")
    with pytest.raises(BundleError):
        Engine.open(bad, variant="fp32", verify=False)


# ----------------------------------------------------------------------------- host program & CLI


@pytest.mark.parametrize("column", [None, "name"])
def test_host_example_runs(lean_bundle, tmp_path, column):
    """On the test bundle, and on one whose only text column is not MovieLens's "title" (a newcomer's
    own data): the example adds its item through the bundle's first text column."""
    bundle = lean_bundle
    if column is not None:
        bundle = copy_bundle(lean_bundle, tmp_path / "other-columns")
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["data"]["text_columns"] = [column]
        (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "host.py"), str(bundle)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["recommend", "similar", "search", "after update"]


def test_the_readme_shows_the_host_example_as_it_is():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## A host program in ten lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    example = (ROOT / "examples" / "host.py").read_text()
    docstring, code = example.split("\n", 1)
    assert docstring.startswith('"""') and code == block, "README's host program differs from examples/host.py"


def test_cli_commands(lean_bundle, arrays):
    from click.testing import CliRunner

    from recengine.cli import cli

    runner = CliRunner()
    user = arrays["user_ids"][0]
    res = runner.invoke(cli, ["recommend", str(lean_bundle), "--user", user, "--k", "4", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["provider"] == "CPUExecutionProvider" and len(payload["results"]) == 4
    res = runner.invoke(cli, ["recommend", str(lean_bundle), "--user", user, "--explain"])
    assert res.exit_code == 0 and "in your history" in res.output
    res = runner.invoke(cli, ["similar", str(lean_bundle), "--item", arrays["item_ids"][0], "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)["results"]) == 10
    res = runner.invoke(cli, ["search", str(lean_bundle), "funny animated toys", "--k", "3"])
    assert res.exit_code == 0 and res.output.count("\n") == 3
    res = runner.invoke(cli, ["recommend", str(lean_bundle), "--user", user, "--scene", "weather=rain"])
    assert res.exit_code == 2 and "error: unknown scene key 'weather'" in res.output
    res = runner.invoke(cli, ["recommend", str(lean_bundle), "--user", user, "--scene", "novalue"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output
    res = runner.invoke(cli, ["search", str(lean_bundle), ""])
    assert res.exit_code == 2 and "empty" in res.output
    res = runner.invoke(cli, ["similar", "/no/such/bundle", "--item", "1"])
    assert res.exit_code == 2 and "no such bundle" in res.output


def test_no_warnings_on_plain_cpu_open(lean_bundle):
    from recengine import Engine

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Engine.open(lean_bundle, device="cpu")


def test_group_recommendation_in_a_scene(engine, arrays):
    scene_cols = arrays["manifest"]["vocab"]["scene"]["columns"]
    if not scene_cols:
        pytest.skip("the fixture bundle has no scene columns")
    col = scene_cols[0]
    value = arrays["manifest"]["vocab"]["scene"]["values"][col][1]
    user = arrays["user_ids"][0]
    alone = engine.recommend_group([user], k=10, scene={col: value})
    direct = engine.recommend(user_id=user, k=10, scene={col: value})
    # a one-member group in a scene ranks like that member's own request in the scene
    assert [r.item_id for r in alone] == [r.item_id for r in direct]
    with pytest.raises(RequestError, match="unknown scene key"):
        engine.recommend_group([user], scene={"weather": "rain"})


# ----------------------------------------------------------------------------- the torch-exported bundle
# What only a bundle made by `recengine export` (torch) can show: the export's parity record, that the
# runtime reproduces what the export stored, and the export's choice of index form. They skip, naming
# the reason, where torch is not installed (the `tiny_bundle` fixture).


def test_export_records_parity(tiny_bundle):
    """The ONNX models match torch per the manifest's parity record (the export's own measurement)."""
    parity = open_bundle(tiny_bundle).manifest["metrics"]["parity"]
    assert parity["fusion"]["fp32_max_abs"] <= 1e-4
    assert parity["user_tower"]["fp32_max_abs"] <= 1e-4


def test_exported_bundle_serves_what_the_export_stored(tiny_bundle):
    """The runtime's fp32 user tower and encoder reproduce the export's stored user vectors and text
    vectors (the text embeddings as stored: float16), and the indexes are served in the form the export stored
    (item: augmented; 400 items are searched by scanning, so there is no text index)."""
    from recengine import Engine

    reader = open_bundle(tiny_bundle)
    items, users = reader.section("items"), reader.section("users")
    eng = Engine.open(tiny_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact", rescore=False)
    stages = eng.stages()
    got = stages.user_tower(reader.load_json(users["ids"])[:8])
    assert np.abs(got - reader.load_npy(users["vectors"])[:8]).max() < 1e-4
    emb, vec = stages.encode(reader.load_json(items["texts"])[:16])
    assert np.abs(emb - reader.load_npy(items["text_embeddings"])[:16]).max() < 1e-3
    assert np.abs(vec - reader.load_npy(items["text_vectors"])[:16]).max() < 1e-4
    assert Engine.open(tiny_bundle, device="cpu", retrieval="hnsw").index_forms() == ("mips_augment", "none")


def test_mips_augmented_index_bundle(tiny_bundle, tmp_path):
    """The export stores the item index MIPS-augmented (docs/bundle.md, Indexes: vector norms vary), which
    finds the exact top-10 far better than a plain inner-product graph over the same vectors. Whether it
    does is data-dependent (on the lean bundle's random vectors plain wins), hence the exported bundle."""
    from recengine import Engine
    from recengine.bundle import sha256_file
    from recengine.index_io import write_index

    fp32 = Engine.open(tiny_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact", rescore=False)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    # format 2: the item vectors are stored once, inside the item index they were indexed from
    assert manifest["items"]["vectors"] == manifest["index"]["item"]["path"]
    arrays = {"vectors": open_bundle(tiny_bundle).load_npy(manifest["items"]["vectors"]), "user_ids": fp32.user_ids()}
    assert arrays["vectors"].shape == (len(fp32.item_ids()), manifest["dims"]["item"])
    assert manifest["index"]["item"]["transform"] == "mips_augment"
    bundle = copy_bundle(tiny_bundle, tmp_path / "plain")
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = manifest["index"]["item"]

    class Into:
        def path(self, rel: str) -> Path:
            return bundle / rel

    manifest["index"]["item"] = write_index(Into(), "item", spec["path"], arrays["vectors"], M=spec["M"],
                                            ef_construction=spec["ef_construction"], ef_search=spec["ef_search"],
                                            augment=False)
    assert "transform" not in manifest["index"]["item"]
    manifest["files"][spec["path"]] = {"sha256": sha256_file(bundle / spec["path"]),
                                       "bytes": (bundle / spec["path"]).stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    recall = {}
    for name, path in (("augmented", tiny_bundle), ("plain", bundle)):
        eng = Engine.open(path, device="cpu", variant="fp32", retrieval="hnsw", rescore=False)
        recall[name] = np.mean([len({r.item_id for r in eng.recommend(user_id=u, k=10)}
                                    & {r.item_id for r in fp32.recommend(user_id=u, k=10)}) / 10
                                for u in arrays["user_ids"][:20]])
    assert recall["augmented"] >= 0.95 and recall["augmented"] >= recall["plain"]
