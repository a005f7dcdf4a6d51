"""End-to-end export tests on the tiny MovieLens fixture with the quick profile and the tiny encoder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from recengine.bundle import open_bundle
from recengine.errors import BundleError, ExportError, ParityError


def _onnx(bundle, model: str, variant: str = "fp32"):
    import onnxruntime as ort

    path = bundle.path(bundle.manifest["models"][model]["variants"][variant]["path"])
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_bundle_has_every_documented_part(tiny_bundle: Path, ml_tiny_dataset):
    b = open_bundle(tiny_bundle)  # verifies every checksum
    m = b.manifest
    n, d = ml_tiny_dataset.n_items, m["dims"]["item"]
    assert m["data"]["n_items"] == n and m["data"]["n_users"] == ml_tiny_dataset.n_users
    assert m["data"]["fingerprint"] == ml_tiny_dataset.fingerprint
    for model in ("encoder", "user_tower", "fusion"):
        assert set(m["models"][model]["variants"]) == {"fp32", "int8", "fp16"}
        for spec in m["models"][model]["variants"].values():
            assert b.has(spec["path"])
    assert b.load_npy(m["items"]["vectors"]).shape == (n, d)
    assert b.load_npy(m["items"]["text_vectors"]).shape == (n, d)
    assert b.load_npy(m["items"]["text_embeddings"]).shape == (n, m["dims"]["text"])
    assert b.load_npy(m["items"]["item_feats"]).shape == (n, m["dims"]["item_feats"])
    assert len(b.load_json(m["items"]["ids"])) == n
    assert b.load_npy(m["users"]["vectors"]).shape == (ml_tiny_dataset.n_users, d)
    indptr = b.load_npy(m["users"]["history_indptr"])
    assert indptr[-1] == len(b.load_npy(m["users"]["history_items"]))
    assert m["index"]["item"]["count"] == n and m["index"]["item"]["space"] == "ip"
    # 400 items are scanned by `search`: no text index, the text rows in float16 (docs/bundle.md)
    assert "text" not in m["index"] and m["config"]["index"]["text"] == "auto"
    assert m["items"]["text_embeddings"] == "items/text_embeddings.npy"
    assert b.array_header(m["items"]["text_embeddings"])[1] == np.float16
    # metrics: ONNX pipelines on validation, parity, ablations; timings per stage
    for variant in ("fp32", "int8", "fp16"):
        assert 0.0 <= m["metrics"]["validation"][variant]["ndcg@10"] <= 1.0
    assert 0.0 <= m["metrics"]["test"]["fp32"]["ndcg@10"] <= 1.0
    for model in ("encoder", "user_tower", "fusion"):
        assert m["metrics"]["parity"][model]["fp32_max_abs"] <= 1e-4
        assert m["metrics"]["parity"][model]["int8_mean_cos"] > 0.9
    assert {"full", "no_fusion", "graph_only", "frozen_text"} <= set(m["metrics"]["ablations"])
    for stage in ("graph", "text_align", "user_tower", "fusion", "onnx_encoder", "index", "eval_int8", "total"):
        assert m["timings"][stage] >= 0
    assert m["config"]["profile"] == "quick"
    assert isinstance(m["models"]["fusion"]["use_by_default"], bool)


def test_every_item_is_indexed_and_cold_items_get_text_vectors(tiny_bundle: Path):
    b = open_bundle(tiny_bundle)
    m = b.manifest
    vectors = b.load_npy(m["items"]["vectors"])
    text = b.load_npy(m["items"]["text_vectors"])
    pop = b.load_npy(m["items"]["popularity"])
    cold = np.flatnonzero(pop == 0)
    warm = np.flatnonzero(pop > 0)
    assert len(cold) > 0, "ml_tiny has items nobody interacted with in train"
    np.testing.assert_array_equal(vectors[cold], text[cold])
    assert np.all(np.linalg.norm(text[cold], axis=1) > 0)
    assert not np.allclose(vectors[warm], text[warm])
    assert np.all(b.load_npy(m["items"]["pop_bucket"])[cold] == 0)
    from recengine.bundle.format import IndexSpec
    from recengine.index_io import open_index

    spec = IndexSpec.from_manifest("item", m["index"]["item"], vectors.shape[1])
    index = open_index(str(b.path(spec.path)), spec, max(spec.ef_search, 50), len(vectors))
    assert index.index.get_current_count() == len(vectors)
    labels, _ = index.search(vectors[cold[:5]], 10)  # queries get the stored form's transform
    exact = np.argsort(-(vectors[cold[:5]] @ vectors.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(labels, exact)])
    assert overlap >= 0.8


@pytest.fixture(scope="module")
def text_indexed_bundle(tmp_path_factory: pytest.TempPathFactory, ml_tiny_dir: Path, tiny_encoder_dir: Path) -> Path:
    """The tiny export with `index.text = "hnsw"`: the text index a catalogue past the scan budget gets."""
    from recengine.export import ExportConfig, run_export

    config = ExportConfig.from_profile("quick").override(
        {"encoder.path": str(tiny_encoder_dir), "quiet": True, "index.text": "hnsw", "ablations": []})
    return run_export(ml_tiny_dir, tmp_path_factory.mktemp("text_indexed") / "bundle", config)


def test_stored_ef_is_calibrated_on_search_like_queries(text_indexed_bundle: Path):
    """Each index's ef_search is the smallest of the ladder, from the profile's ef up, that reaches
    `index.min_recall` on probe queries (`recengine.index_io.calibrate_ef`): re-measured here on the stored
    index with the export's own text probes."""
    from recengine import Engine
    from recengine.export.config import ExportConfig
    from recengine.index_io import EF_LADDER, PROBE_QUERIES, calibrate_ef, query_like

    cfg = ExportConfig.from_profile("quick").index
    m = open_bundle(text_indexed_bundle).manifest
    assert m["items"]["text_embeddings"] == m["index"]["text"]["path"]  # held by the index (format 2)
    engine = Engine.open(text_indexed_bundle, device="cpu", variant="fp32")
    engine.warmup()
    st = engine._state
    for name in ("item", "text"):
        ef = m["index"][name]["ef_search"]
        assert ef == cfg.ef_search or (ef in EF_LADDER and ef > cfg.ef_search)
    probe = st.models.encode_queries(query_like(list(st.catalogue.texts), PROBE_QUERIES, m["config"]["seed"]))
    backend = st.text_index.hnsw.backend()
    rows = np.arange(st.catalogue.n_rows)
    ef, recall = calibrate_ef(backend, st.catalogue.text_embeddings, rows, cfg.ef_search, cfg.min_recall,
                              queries=probe)
    assert recall >= cfg.min_recall or ef == EF_LADDER[-1]
    assert m["index"]["text"]["ef_search"] == ef  # the same choice from the served encoder's embeddings


def test_the_text_index_serves_the_scanned_search(tiny_bundle: Path, text_indexed_bundle: Path):
    """Same data, same seed: with or without a text index the search space is the same (float16 on disk
    only rounds it) and the top results agree."""
    from recengine import Engine

    scanned = Engine.open(tiny_bundle, device="cpu", variant="fp32")
    indexed = Engine.open(text_indexed_bundle, device="cpu", variant="fp32", retrieval="hnsw")
    a = scanned._state.catalogue.text_embeddings
    b = indexed._state.catalogue.text_embeddings
    assert np.abs(a - b).max() < 2e-3
    titles = [t.split("\n", 1)[0].split(": ", 1)[-1] for t in scanned._state.catalogue.texts[:20]]
    agree = [scanned.search(q, k=1)[0].item_id == indexed.search(q, k=1)[0].item_id for q in titles]
    assert np.mean(agree) >= 0.9


def test_text_vectors_come_from_the_onnx_encoder(tiny_bundle: Path):
    from tokenizers import Tokenizer

    b = open_bundle(tiny_bundle)
    m = b.manifest
    tok = Tokenizer.from_file(str(b.path(m["tokenizer"]["path"])))
    tok.enable_truncation(max_length=m["tokenizer"]["max_length"])
    texts = b.load_json(m["items"]["texts"])[:8]
    enc = tok.encode_batch(texts)
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    mask = np.zeros((len(enc), width), np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    text_emb, states = _onnx(b, "encoder").run(None, {"input_ids": ids, "attention_mask": mask})
    # the quick profile trains LoRA in the last of 2 layers: the bundle is split (docs/bundle.md)
    assert m["models"]["encoder"]["search_space"] == "pretrained" and states.shape[:2] == ids.shape
    (item_vec,) = _onnx(b, "item_head").run(None, {"item_states": states, "attention_mask": mask})
    np.testing.assert_allclose(item_vec, b.load_npy(m["items"]["text_vectors"])[:8], atol=1e-4)
    stored = b.load_npy(m["items"]["text_embeddings"])[:8]  # float16 on disk: rounded to 2^-11 relative
    np.testing.assert_allclose(text_emb, stored.astype(np.float32), rtol=1e-3, atol=1e-4)


def test_stored_user_vectors_equal_the_onnx_user_tower(tiny_bundle: Path):
    b = open_bundle(tiny_bundle)
    m = b.manifest
    vectors = b.load_npy(m["items"]["vectors"])
    indptr = b.load_npy(m["users"]["history_indptr"])
    items = b.load_npy(m["users"]["history_items"])
    profile = b.load_npy(m["users"]["profile"])
    stored = b.load_npy(m["users"]["vectors"])
    session = _onnx(b, "user_tower")
    for u in (0, 7, 42):
        seq = items[indptr[u]:indptr[u + 1]][-m["dims"]["max_history"]:]
        (out,) = session.run(None, {
            "history": vectors[seq][None].astype(np.float32),
            "history_mask": np.ones((1, len(seq)), np.float32),
            "scene": np.zeros((1, m["dims"]["scene_slots"]), np.int64),
            "profile": profile[u:u + 1],
        })
        np.testing.assert_allclose(out[0], stored[u], atol=1e-4)


@pytest.fixture(scope="module")
def bundle_without_refit(tmp_path_factory: pytest.TempPathFactory, ml_tiny_dir: Path, tiny_encoder_dir: Path) -> Path:
    """The `tiny_bundle` export with `cooccur.refit` off: it serves the lists its validation metrics measured,
    so every `metrics.validation` figure must reproduce from it."""
    from recengine.export import ExportConfig, run_export

    config = ExportConfig.from_profile("quick").override(
        {"encoder.path": str(tiny_encoder_dir), "quiet": True, "cooccur.refit": False})
    return run_export(ml_tiny_dir, tmp_path_factory.mktemp("no_refit") / "bundle", config)


def test_evaluate_bundle_reproduces_the_manifest_metrics(tiny_bundle: Path, bundle_without_refit: Path,
                                                          ml_tiny_dataset):
    """`metrics.test.fp32` is what the bundle as written scores on the test split; `metrics.validation` is
    measured before the co-occurrence lists are rebuilt with the validation events (`cooccur.refit`), so it
    reproduces from a bundle exported without the refit, for every variant."""
    from recengine.export import evaluate_bundle
    from recengine.split import leave_last_out

    for bundle in (tiny_bundle, bundle_without_refit):
        b = open_bundle(bundle)
        split = leave_last_out(ml_tiny_dataset.interactions, ml_tiny_dataset.n_users, ml_tiny_dataset.n_items,
                               seed=b.manifest["config"]["seed"])
        got = evaluate_bundle(bundle, ml_tiny_dataset, split, "fp32", "test")
        assert got["ndcg@10"] == pytest.approx(b.manifest["metrics"]["test"]["fp32"]["ndcg@10"], abs=1e-9)
    assert b.manifest["metrics"]["cooccur"]["refit_events"] is None
    for variant in ("fp32", "int8"):
        got = evaluate_bundle(bundle_without_refit, ml_tiny_dataset, split, variant, "valid")
        assert got["ndcg@10"] == pytest.approx(b.manifest["metrics"]["validation"][variant]["ndcg@10"], abs=1e-9)


def test_the_reencoded_check_goes_through_the_variants_own_encoder(bundle_without_refit: Path, ml_tiny_dataset,
                                                                    monkeypatch):
    """`metrics.validation_reencoded.int8` judges the INT8 encoder (it serves search queries and items added
    with `item_variant="int8"`), not the fp32 item encoder an INT8 engine adds items with by default."""
    from recengine.export import evaluate_bundle, validation
    from recengine.split import leave_last_out

    opened = []
    real = validation.open_variant

    def spy(*args, **kwargs):
        engine = real(*args, **kwargs)
        opened.append((engine.variants["encoder"], engine.item_variant))
        return engine

    monkeypatch.setattr(validation, "open_variant", spy)
    b = open_bundle(bundle_without_refit)
    split = leave_last_out(ml_tiny_dataset.interactions, ml_tiny_dataset.n_users, ml_tiny_dataset.n_items,
                           seed=b.manifest["config"]["seed"])
    got = evaluate_bundle(bundle_without_refit, ml_tiny_dataset, split, "int8", "valid", reencode=True)
    assert opened == [("int8", "int8")]
    want = b.manifest["metrics"]["validation_reencoded"]["int8"]["ndcg@10"]
    assert got["ndcg@10"] == pytest.approx(want, abs=1e-9)
    evaluate_bundle(bundle_without_refit, ml_tiny_dataset, split, "int8", "valid")
    assert opened[-1] == ("int8", "fp32")  # as served: no re-encoding, the engine's default item encoder


def test_export_is_reproducible_under_a_fixed_seed(tiny_bundle: Path, ml_tiny_dir: Path, tiny_encoder_dir: Path,
                                                   tmp_path: Path):
    from recengine.export import ExportConfig, run_export

    # same training config as the tiny_bundle fixture; the cheaper tail (no ablations) does not touch training
    cfg = ExportConfig.from_profile("quick").override(
        {"encoder.path": str(tiny_encoder_dir), "quiet": True, "ablations": ""})
    again = open_bundle(run_export(ml_tiny_dir, tmp_path / "again", cfg))
    first = open_bundle(tiny_bundle)
    for section, key in (("items", "vectors"), ("items", "text_vectors"), ("users", "vectors")):
        np.testing.assert_allclose(again.load_npy(again.manifest[section][key]),
                                   first.load_npy(first.manifest[section][key]), atol=1e-6, rtol=0)
    assert again.manifest["metrics"]["validation"]["fp32"] == first.manifest["metrics"]["validation"]["fp32"]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_existing_output_is_refused_before_training(tiny_bundle: Path, tmp_path: Path):
    from recengine.export import ExportConfig, run_export

    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="already exists"):
        run_export(None, out, ExportConfig.from_profile("quick").override({"quiet": True}))
    assert (out / "keep.txt").read_text() == "mine"
    assert _leftovers(tmp_path) == ["exists"]


def test_broken_encoder_directory_fails_cleanly(ml_tiny_dir: Path, tmp_path: Path):
    from recengine.export import ExportConfig, run_export

    broken = tmp_path / "broken-encoder"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(broken), "quiet": True})
    with pytest.raises(ExportError):
        run_export(ml_tiny_dir, out_parent / "bundle", cfg)
    assert _leftovers(out_parent) == []


def test_too_small_data_set_is_refused(ml_tiny_dir: Path, tiny_encoder_dir: Path, tmp_path: Path):
    from recengine.export import ExportConfig, run_export

    small = tmp_path / "small"
    small.mkdir()
    shutil.copy(ml_tiny_dir / "movies.csv", small / "movies.csv")
    lines = (ml_tiny_dir / "ratings.csv").read_text().splitlines()
    user = lines[1].split(",")[0]
    (small / "ratings.csv").write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] == user][:6])
                                       + "\n")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True})
    with pytest.raises(ExportError, match="too little data"):
        run_export(small, out_parent / "bundle", cfg)
    assert _leftovers(out_parent) == []


def test_a_failure_mid_export_leaves_nothing(ml_tiny_dir: Path, tiny_encoder_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch):
    from recengine.export import ExportConfig, pipeline
    from recengine.export import fit as fit_module

    def failing_export(*args, **kwargs):
        raise ParityError("parity check failed for model 'encoder', variant 'int8': simulated")

    monkeypatch.setattr(pipeline, "export_models_and_arrays", failing_export)
    cfg = ExportConfig.from_profile("quick").override(
        {"encoder.path": str(tiny_encoder_dir), "quiet": True, "ablations": "", "user.epochs": 1,
         "graph.epochs": 1, "encoder.epochs": 1, "fusion.epochs": 1})
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    with pytest.raises(ParityError, match="simulated"):
        pipeline.run_export(ml_tiny_dir, out_parent / "bundle", cfg)
    assert _leftovers(out_parent) == []
    assert fit_module is not None


def test_cooccur_choice_is_what_the_bundle_serves(tiny_bundle: Path, ml_tiny_dir: Path):
    """The blend the export chose on validation is the one served: the fp32 validation NDCG@10 measured after
    the lists were written equals the chosen grid point's (same users, same engine), or the tower's own
    when nothing was chosen (and then the bundle has no lists)."""
    m = open_bundle(tiny_bundle).manifest
    choice = m["metrics"]["cooccur"]
    served = m["metrics"]["validation"]["fp32"]["ndcg@10"]
    assert choice["grid"] and all(p["ndcg@10"] >= 0 for p in choice["grid"])
    if choice["shrink"] is None:
        assert "cooccur" not in m and served == pytest.approx(choice["base"], abs=1e-12)
        return
    assert served == pytest.approx(choice["best"], abs=1e-12)
    section = m["cooccur"]
    assert section["weight"] == pytest.approx(choice["relative_weight"] * choice["spread"])
    assert section["decay"] == choice["decay"]
    if choice["weighting"].startswith("ease"):  # EASE's lambda rides in the choice's `shrink`
        assert section["lambda"] == choice["shrink"]
        assert section["similarity"] == {"ease": "ease", "ease_text": "ease-text"}[choice["weighting"]]
        assert ("text_alpha" in section) == (choice["weighting"] == "ease_text")
    else:
        assert section["shrink"] == choice["shrink"] and section["similarity"] == f"{choice['weighting']}-cosine"
    assert ("text_map" in section) == bool(choice["text_standin"])  # kept only when validation did not drop
    # served: the chosen lists rebuilt from train + validation events once validation had measured them
    from recengine.data import load_dataset
    from recengine.export.config import ExportConfig
    from recengine.export.cooccur import build_lists, item_users, popularity_scaled
    from recengine.export.fit import train_valid_split
    from recengine.split import leave_last_out

    ds = load_dataset(ml_tiny_dir)
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=m["config"]["seed"])
    both = train_valid_split(split).train
    assert choice["refit_events"] == len(both)
    co = dataclasses.replace(ExportConfig().cooccur, k=int(m["config"]["cooccur"]["k"]),
                             ease_text_alpha=float(m["config"]["cooccur"]["ease_text_alpha"]))
    built = build_lists({choice["weighting"]: (choice["shrink"],)}, both, ds, split, co)[
        (choice["weighting"], choice["shrink"])]
    assert section["pop_exponent"] == choice["pop_exponent"]
    idx, _ = popularity_scaled(*built, item_users(both, ds.n_items), choice["pop_exponent"])
    np.testing.assert_array_equal(np.load(tiny_bundle / section["indices"]), idx[:, : section["k"]])


def test_info_names_the_split_encoders_search_space(tiny_bundle: Path) -> None:
    from recengine.cli.info import summarize

    lines = summarize(open_bundle(tiny_bundle).manifest)
    assert any(ln.startswith("model encoder ") and ln.endswith("(search space: pretrained)") for ln in lines)
    assert any(ln.startswith("model item_head ") for ln in lines)


def test_what_loading_worked_around_is_printed_and_kept(tmp_path: Path, ml_tiny_dir: Path, tiny_encoder_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]):
    """A newcomer's data with a few interactions on items the catalogue lacks: the export says so on stderr
    (`--quiet` or not) and keeps it in the manifest with the note that ratings (weights) are not used;
    `recengine info` shows both."""
    from recengine.cli.info import summarize
    from recengine.data.schema import WEIGHT_NOTE
    from recengine.export import ExportConfig, run_export

    data = Path(shutil.copytree(ml_tiny_dir, tmp_path / "data"))
    with open(data / "ratings.csv", "a") as f:
        f.write("4,999999,4.0,986935300\n4,999998,4.0,986935301\n")
    config = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True})
    out = run_export(data, tmp_path / "bundle", config)
    err = capsys.readouterr().err
    dropped = [line for line in err.splitlines() if line.startswith("warning: ") and "dropped 2 interaction" in line]
    assert len(dropped) == 1, err
    assert WEIGHT_NOTE not in err  # a note, not a warning: quiet hides it
    warnings = open_bundle(out).manifest["data"]["warnings"]
    assert warnings == [dropped[0][len("warning: "):], WEIGHT_NOTE]
    shown = [line for line in summarize(open_bundle(out).manifest) if line.startswith(("data warning", "data note"))]
    assert [line.split("  ")[0] for line in shown] == ["data warning", "data note"]


def test_the_tiny_bundle_records_that_ratings_are_not_used(tiny_bundle: Path):
    from recengine.data.schema import WEIGHT_NOTE

    assert open_bundle(tiny_bundle).manifest["data"]["warnings"] == [WEIGHT_NOTE]
