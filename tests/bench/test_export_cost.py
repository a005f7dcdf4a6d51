"""`recengine bench export`: the synthetic data generator, the growth fit, the stage attribution, the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recengine.bench.export_cost import (
    SCHEMA,
    ExportCostConfig,
    attribute,
    export_markdown,
    growth_exponents,
    growth_table,
    run_export_cost,
    short_texts,
    write_export_report,
)
from recengine.bench.export_data import SyntheticSpec, pseudo_words, write_synthetic_data
from recengine.errors import RequestError


def test_generator_writes_a_data_folder_the_loader_reads(tmp_path):
    from recengine.data import load_dataset

    info = write_synthetic_data(SyntheticSpec(n_items=300, n_interactions=3000, mean_history=15), tmp_path / "d")
    data = load_dataset(tmp_path / "d")
    assert (data.n_items, data.n_users, len(data.interactions)) == (300, 200, 3000)
    assert info["n_users"] == 200 and info["bytes"] > 0
    assert data.items.text_columns == ("title", "genres", "description") or \
        list(data.items.text_columns) == ["title", "genres", "description"]
    assert "attr_year" in data.items.attrs and "ctx_device" in data.interactions.context
    assert data.interactions.timestamp is not None
    words = [len(t.split()) for t in data.items.texts]
    assert 15 <= np.mean(words) <= 50  # title + genres + 12-40 description words
    assert np.bincount(data.interactions.user, minlength=data.n_users).min() >= 3
    # learnable structure: a user's events concentrate on few items' genres far above a uniform draw
    genre = np.array([t.split("\n")[1].split(": ")[1].split("|")[0] for t in data.items.texts])
    share = []
    for u in range(data.n_users):
        g = genre[data.interactions.item[data.interactions.user == u]]
        share.append(np.unique(g, return_counts=True)[1].max() / len(g))
    assert np.mean(share) > 0.6
    # the same spec writes the same files
    write_synthetic_data(SyntheticSpec(n_items=300, n_interactions=3000, mean_history=15), tmp_path / "e")
    for name in ("items.csv", "interactions.csv", "users.csv"):
        assert (tmp_path / "d" / name).read_bytes() == (tmp_path / "e" / name).read_bytes()


def test_generator_refuses_impossible_specs(tmp_path):
    with pytest.raises(RequestError, match="n_items"):
        write_synthetic_data(SyntheticSpec(n_items=5, n_interactions=100), tmp_path)
    assert len(set(pseudo_words(5000))) == 5000
    texts = short_texts(50, 0)
    assert len(texts) == 50 and all(t.startswith("title: ") and "\ngenres: " in t for t in texts)


def test_growth_exponents_on_hand_made_numbers():
    n = [1e3, 1e4, 1e5]
    # grown together: one exponent
    g = growth_exponents(n, [10 * x for x in n], [3e-3 * x for x in n])
    assert g["exponent"] == pytest.approx(1.0, abs=1e-3) and g["items"] is None and g["r2"] == pytest.approx(1.0)
    g = growth_exponents(n, [10 * x for x in n], [1e-6 * x * x for x in n])
    assert g["exponent"] == pytest.approx(2.0, abs=1e-3)
    # only interactions vary
    g = growth_exponents([500] * 3, n, [x ** 1.5 for x in n])
    assert g["interactions"] == pytest.approx(1.5, abs=1e-3) and g["items"] is None
    # independent axes: t = items * interactions^2
    items, inter = [1e3, 1e4, 1e3, 1e4], [1e4, 1e4, 1e5, 1e5]
    g = growth_exponents(items, inter, [i * m * m for i, m in zip(items, inter)])
    assert (g["items"], g["interactions"], g["exponent"]) == (pytest.approx(1.0), pytest.approx(2.0),
                                                               pytest.approx(3.0))
    # too few usable points, or nothing varies
    assert growth_exponents([1e3], [1e4], [1.0])["exponent"] is None
    assert growth_exponents(n, n, [0.0, 0.0, 1.0])["exponent"] is None
    assert growth_exponents([5, 5], [7, 7], [1.0, 2.0])["exponent"] is None


def _run(items, inter, stages, total):
    return {"n_items": items, "n_interactions": inter, "total_s": total, "total_cpu_s": total,
            "baseline_rss_mib": 200.0, "peak_rss_mib": 200.0 + items / 100,
            "stages": {k: {"seconds": v, "cpu_seconds": v, "peak_rss_delta_mib": items / 1000}
                       for k, v in stages.items()}}


def test_growth_table_flags_only_super_linear_stages_that_matter():
    runs = [_run(1000, 10_000, {"graph": 1.0, "eval": 0.5, "tiny": 0.001}, 10.0),
            _run(10_000, 100_000, {"graph": 10.0, "eval": 50.0, "tiny": 0.1}, 100.0)]
    table = growth_table(runs)
    assert table["graph"]["seconds"]["exponent"] == pytest.approx(1.0) and not table["graph"]["super_linear"]
    assert table["eval"]["seconds"]["exponent"] == pytest.approx(2.0) and table["eval"]["super_linear"]
    assert table["tiny"]["seconds"]["exponent"] == pytest.approx(2.0) and not table["tiny"]["super_linear"]  # 0.1 s
    assert table["total"]["seconds"]["exponent"] == pytest.approx(1.0)
    assert table["eval"]["share_at_largest"] == pytest.approx(0.5)


def test_attribute_places_samples_in_stage_windows_and_fit_stages():
    events = [("load", 1.0, 1.0), ("split", 0.5, 1.5), ("graph", 1.0, 4.0), ("user_tower", 1.0, 4.0),
              ("ablations", 1.0, 5.0), ("total", 6.0, 6.0)]
    samples = [(0.5, 100, 110, None, 0.0), (1.2, 100, 150, None, 0.5), (2.0, 100, 300, "graph", 1.0),
               (3.0, 100, 200, "user_tower", 1.25), (3.5, 100, 250, "text_encode", 1.5), (4.5, 100, 400, "graph", 2.5),
               (5.5, 100, 120, None, 2.75)]
    out = attribute(samples, events, 0.5)
    assert out["load"] == {"sampled_seconds": 0.5, "cpu_seconds": 0.0, "peak_rss_mib": 110}
    assert out["graph"]["cpu_seconds"] == 0.5 and out["ablations"]["cpu_seconds"] == 1.0
    assert out["split"]["peak_rss_mib"] == 150
    assert out["graph"]["peak_rss_mib"] == 300  # the ablation's graph sample belongs to the ablations window
    assert out["ablations"]["peak_rss_mib"] == 400
    assert out["text_encode"]["peak_rss_mib"] == 250 and out["untimed"]["peak_rss_mib"] == 120


def test_config_refuses_bad_values():
    with pytest.raises(RequestError, match="too small"):
        ExportCostConfig(sizes=((5, 100),)).validate()
    with pytest.raises(RequestError, match="rate-bundle"):
        ExportCostConfig(rate_texts=10).validate()


@pytest.mark.timeout(600)
def test_end_to_end_two_tiny_sizes(tmp_path):
    pytest.importorskip("torch")
    cfg = ExportCostConfig(sizes=((60, 600), (120, 1200)), mean_history=10,
                           overrides={"variants": "fp32", "ablations": "", "parity.reencode_variants": "",
                                      "encoder.max_align_items": 64},
                           workdir=tmp_path / "w", quiet=True, interval=0.01)
    report = run_export_cost(cfg)
    assert report["schema"] == SCHEMA and report["kind"] == "export"
    assert report["machine"]["instruction_sets"] is not None and report["machine"]["load_average_at_end"]
    assert [r["n_items"] for r in report["runs"]] == [60, 120]
    for run in report["runs"]:
        stages = run["stages"]
        for name in ("load", "split", "graph", "text_align", "text_encode", "user_tower", "fusion", "arrays",
                     "onnx_encoder", "index", "eval_fp32", "untimed"):
            assert name in stages, name
            assert stages[name]["seconds"] >= 0
        assert stages["graph"]["source"] == "manifest" and stages["text_encode"]["source"] == "sampled"
        assert run["peak_rss_mib"] >= run["baseline_rss_mib"] > 50
        assert run["n_samples"] > 10 and run["bundle_bytes"] > 0 and 0 < run["total_cpu_s"] < 1.5 * run["total_s"]
        assert sum(s["seconds"] for k, s in stages.items() if k not in ("text_encode", "fit_other")) == \
            pytest.approx(run["total_s"], rel=0.05)
    growth = report["growth"]
    assert set(growth) >= {"graph", "total"}
    for entry in growth.values():
        assert set(entry) == {"seconds", "cpu_seconds", "memory", "seconds_at_largest", "share_at_largest",
                              "super_linear"}
        assert set(entry["seconds"]) == {"exponent", "items", "interactions", "r2", "n_points"}
    assert math.isfinite(growth["total"]["seconds"]["exponent"])
    files = write_export_report(report, tmp_path / "r")
    saved = json.loads(files["json"].read_text(encoding="utf-8"))
    assert saved["schema"] == SCHEMA and saved["runs"][0]["stages"].keys() == report["runs"][0]["stages"].keys()
    assert files["export_cost"].stat().st_size > 1000
    md = export_markdown(report)
    assert "## Seconds per stage" in md and "| graph" in md and "60 items" in md.replace(",", "")


def test_stage_timings_tell_the_observer_each_stage():
    from recengine.export.pipeline import StageTimings

    seen = []
    timings = StageTimings(lambda name, secs: seen.append((name, secs)))
    timings["load"] = 1.5
    timings.update({"graph": 2.0, "user_tower": 3.0})
    assert dict(timings) == {"load": 1.5, "graph": 2.0, "user_tower": 3.0}
    assert seen == [("load", 1.5), ("graph", 2.0), ("user_tower", 3.0)]
    assert dict(StageTimings()) == {}


def test_catalogue_encoding_in_chunks_equals_one_pass(tiny_encoder_dir):
    torch = pytest.importorskip("torch")
    from recengine.export.align import encode_catalogue
    from recengine.export.encoder import (
        TextTowerConfig,
        build_text_tower,
        encode_texts,
        load_tokenizer,
        resolve_encoder,
    )
    from recengine.progress import Progress

    source = resolve_encoder(str(tiny_encoder_dir))
    tokenizer, info = load_tokenizer(source, max_length=32)
    tower = build_text_tower(source, TextTowerConfig(item_dim=8, finetune="none"))
    texts = short_texts(23, 1) + ["a much longer text " * 10, "x"]
    emb, vec = encode_texts(tower, tokenizer, texts, batch_size=4, pad_id=info.pad_id)
    c_emb, c_vec = encode_catalogue(tower, tokenizer, texts, 4, torch.device("cpu"), info.pad_id, Progress(True),
                                    chunk=7)
    assert c_emb.dtype == np.float32 and c_emb.shape == tuple(emb.shape) and c_vec.shape == tuple(vec.shape)
    np.testing.assert_allclose(c_emb, emb.numpy(), atol=1e-5)
    np.testing.assert_allclose(c_vec, vec.numpy(), atol=1e-5)


def test_hard_negatives_in_query_blocks_equal_one_block(monkeypatch, ml_tiny_dataset):
    pytest.importorskip("torch")
    from recengine.export import fusion
    from recengine.export.config import FusionConfig
    from recengine.split import leave_last_out

    split = leave_last_out(ml_tiny_dataset.interactions, ml_tiny_dataset.n_users, ml_tiny_dataset.n_items)
    rng = np.random.default_rng(0)
    items = rng.standard_normal((split.n_items, 8)).astype(np.float32)
    scene = np.zeros((len(split.train), 1), np.int64)
    profiles = np.zeros((split.n_users, 1), np.int64)

    def users(hist, scene_, prof):  # a user vector that depends on the history (mean of its item vectors)
        return np.stack([items[h[h >= 0]].mean(0) for h in hist]).astype(np.float32)

    args = (split, scene, profiles, users, items, FusionConfig(n_candidates=10, samples_per_user=3), 20, 0)
    monkeypatch.setattr(fusion, "QUERY_BLOCK", 10**9)
    whole = fusion.fusion_train_data(*args)
    monkeypatch.setattr(fusion, "QUERY_BLOCK", 7)
    blocks = fusion.fusion_train_data(*args)
    assert len(whole.cands) > 7 * 3
    np.testing.assert_array_equal(whole.cands, blocks.cands)
