"""`recengine bench search` (issue 15): metric functions on hand-made cases, seeded queries, the JSON schema."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recengine.bench.search import (
    KNOWN_VARIANTS,
    SCHEMA_VERSION,
    hit_at,
    make_queries,
    ndcg_at,
    precision_at,
    reciprocal_rank,
    strip_year,
    typo,
)
from recengine.errors import RequestError


def test_known_item_metrics():
    ranked = [7, 3, 9, 1]
    assert hit_at(ranked, 7, 1) == 1.0 and hit_at(ranked, 3, 1) == 0.0
    assert hit_at(ranked, 1, 4) == 1.0 and hit_at(ranked, 1, 3) == 0.0 and hit_at(ranked, 42, 10) == 0.0
    assert reciprocal_rank(ranked, 7) == 1.0
    assert reciprocal_rank(ranked, 9) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, 1, k=3) == 0.0
    assert reciprocal_rank([], 1) == 0.0


def test_attribute_metrics():
    relevant = {1, 2, 5}
    assert precision_at([1, 9, 2, 8], relevant, 4) == 0.5
    assert precision_at([1, 2], relevant, 10) == pytest.approx(0.2)  # empty slots are misses
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal for 3 relevant = 1 + 1/log2(3) + 1/log2(4)
    assert ndcg_at([1, 9, 2, 8], relevant, 4) == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at([5, 1, 2], relevant, 3) == pytest.approx(1.0)
    assert ndcg_at([5], {5}, 10) == pytest.approx(1.0)  # ideal = min(k, |relevant|)
    assert ndcg_at([9, 8], relevant, 2) == 0.0 and ndcg_at([1], set(), 5) == 0.0
    with pytest.raises(ValueError):
        precision_at([1], relevant, 0)


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (a transposition counts one)."""
    d = np.zeros((len(a) + 1, len(b) + 1), int)
    d[:, 0] = range(len(a) + 1)
    d[0, :] = range(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i, j] = min(d[i, j], d[i - 2, j - 2] + 1)
    return int(d[-1, -1])


def test_typo_is_one_edit_and_seeded():
    rng = np.random.default_rng(3)
    for title in ["toy story", "jumanji", "the lord of the rings", "heat", "a bug's life", "up"]:
        t = typo(title, rng)
        assert _edit_distance(title, t) == 1, (title, t)
    assert typo("toy story", np.random.default_rng(0)) == typo("toy story", np.random.default_rng(0))


def test_strip_year():
    assert strip_year("Toy Story (1995)") == "Toy Story"
    assert strip_year("Cosmos (1980-1981)") == "Cosmos"
    assert strip_year("1984 (1984)") == "1984"
    assert strip_year("No Year") == "No Year"
    # goodreads series notes, alone or with a year
    assert strip_year("The Hunger Games (The Hunger Games, #1)") == "The Hunger Games"
    assert strip_year("Dune (Dune Chronicles #1) (1965)") == "Dune"
    assert strip_year("Sabriel (Abhorsen, #1.5)") == "Sabriel"
    assert strip_year("Seven (a.k.a. Se7en) (1995)") == "Seven (a.k.a. Se7en)"  # not a series note: kept
    assert strip_year("(1995)") == "(1995)"  # nothing would be left


TEXTS = [f"title: Film {w} ({1990 + i})\ngenres: {'Comedy' if i % 2 else 'Drama'}\ntags: {'fun' if i < 6 else 'dark'}"
         for i, w in enumerate(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
                                "juliet", "kilo", "lima"])]
TEXTS.append("title: Film alpha (2020)\ngenres: Drama\ntags: dark")  # "Film alpha" is now ambiguous


def test_queries_are_seeded_unique_and_carry_their_items():
    q = make_queries(TEXTS, ("title", "genres", "tags"), n_known=5, n_attr=10, seed=7)
    again = make_queries(TEXTS, ("title", "genres", "tags"), n_known=5, n_attr=10, seed=7)
    assert q.known == again.known and q.attribute == again.attribute
    assert set(q.known) == set(KNOWN_VARIANTS) and all(len(v) == 5 for v in q.known.values())
    targets = [r for _, r in q.known["title"]]
    assert 0 not in targets and 12 not in targets  # the ambiguous title is never drawn
    for (plain, r), (with_year, r2), (lower, r3) in zip(q.known["title"], q.known["title_year"], q.known["lower"]):
        assert r == r2 == r3 and with_year.startswith(plain) and "(" in with_year and lower == plain.lower()
    genres = dict(q.attribute["genres"])
    assert genres["comedy"] == {1, 3, 5, 7, 9, 11} and genres["drama"] == {0, 2, 4, 6, 8, 10, 12}
    assert dict(q.attribute["tags"])["fun"] == set(range(6))
    assert make_queries(TEXTS, ("title", "genres", "tags"), 5, 10, seed=8).known != q.known
    with pytest.raises(RequestError):
        make_queries(TEXTS, (), 5, 10, 0)


def test_combined_queries_name_two_values_and_need_both():
    texts = [f"title: Film {i}\ngenres: {'Action' if i < 12 else 'Drama'}\ntags: {'space' if i % 2 == 0 else 'noir'}"
             for i in range(20)]
    q = make_queries(texts, ("title", "genres", "tags"), n_known=3, n_attr=10, seed=0)
    combined = dict(q.attribute["genres+tags"])
    # carried by >= 5 items together: action+space (0, 2, .., 10) and action+noir (1, .., 11); drama+space
    # and drama+noir hold 4 each
    assert combined == {"action space": set(range(0, 12, 2)), "action noir": set(range(1, 12, 2))}
    # the single-column queries are drawn as before (the combined ones come after them from the same seed)
    assert dict(q.attribute["genres"])["drama"] == set(range(12, 20))
    # one attribute column: no combined queries
    assert "genres+tags" not in make_queries(texts, ("title", "genres"), 3, 10, 0).attribute


def test_queries_can_be_drawn_from_some_rows_only():
    targets = list(range(6, 13))
    q = make_queries(TEXTS, ("title", "genres", "tags"), n_known=50, n_attr=10, seed=1, targets=targets)
    drawn = {r for _, r in q.known["title"]}
    assert drawn and drawn <= set(targets) - {12}  # row 12's title is ambiguous with row 0's
    assert len(drawn) == 6
    # relevance still counts every row that carries the value; a value none of the targets carries is not drawn
    assert dict(q.attribute["tags"]) == {"dark": {6, 7, 8, 9, 10, 11, 12}}
    assert dict(q.attribute["genres"])["comedy"] == {1, 3, 5, 7, 9, 11}


def _books(path):
    rows = ["item_id,title,authors"]
    authors = ["Ann Quill", "Bo Inkwell", "Cy Margin"]
    for i in range(30):
        series = f" (Saga {i % 4}, #{i // 4 + 1})" if i % 2 else ""
        rows.append(f'{i + 1},"Book Zq{i} Vellum Tome{series}",{authors[i % 3]}')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_extra_items_are_added_and_queried(tiny_bundle, ml_tiny_dir, tmp_path):
    from click.testing import CliRunner

    from recengine.cli import cli

    out = tmp_path / "search.json"
    res = CliRunner().invoke(cli, ["bench", "search", str(tiny_bundle), str(ml_tiny_dir), "--extra-items",
                                   str(_books(tmp_path / "books.csv")), "--known", "8", "--attributes", "3",
                                   "--requests", "2", "--no-frozen", "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads(out.read_text())
    assert report["extra_items"]["items"] == 30 and report["extra_items"]["text_columns"] == ["title", "authors"]
    assert report["queries"]["title_column"] == "title"
    assert set(report["queries"]["attribute"]) == {"authors"}
    assert all(q.startswith("Book Zq") and "#" not in q for q in report["queries"]["examples"]["title"])
    assert report["data"]["n_items"] > 30
    # the made-up titles are unique words: BM25 alone finds them, and so does the served hybrid
    assert report["systems"]["bm25"]["known_item"]["title"]["hit@1"] == 1.0
    assert report["systems"][report["served"]]["known_item"]["title"]["hit@1"] == 1.0
    assert report["systems"]["bm25"]["attribute"]["authors"]["precision@10"] == 1.0
    bad = CliRunner().invoke(cli, ["bench", "search", str(tiny_bundle), str(ml_tiny_dir), "--extra-items",
                                   str(tmp_path / "none.txt"), "--no-frozen", "--quiet"])
    assert bad.exit_code == 2 and "--extra-items" in bad.output


def test_bench_json_schema(tiny_bundle, ml_tiny_dir, tiny_encoder_dir, tmp_path):
    from click.testing import CliRunner

    from recengine.cli import cli

    out = tmp_path / "search.json"
    res = CliRunner().invoke(cli, ["bench", "search", str(tiny_bundle), str(ml_tiny_dir), "--known", "12",
                                           "--attributes", "4", "--requests", "3", "--frozen-encoder",
                                           str(tiny_encoder_dir), "--json", str(out), "--report",
                                           str(tmp_path / "rep"), "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads(out.read_text())
    assert report["kind"] == "search" and report["schema_version"] == SCHEMA_VERSION
    for key in ("created_at", "command", "machine", "config", "data", "bundle", "frozen", "queries", "systems",
                "served", "latency", "lexical_index", "targets"):
        assert key in report, key
    assert report["machine"]["cpu"] and report["machine"]["load_average_at_start"] is not None
    assert "load_average_at_end" in report["machine"]
    assert {"bundle_dense", "bundle_hybrid_rrf", "bundle_hybrid_sum", "bm25", "frozen_dense",
            "frozen_hybrid"} <= set(report["systems"])
    assert report["served"] in report["systems"]
    for name, res_ in report["systems"].items():
        ki = res_["known_item"]
        assert set(ki) == set(KNOWN_VARIANTS) | {"all"}
        for v in ki.values():
            assert v["n"] == 12 or v["n"] == 48
            for m in ("hit@1", "hit@10", "mrr@10"):
                assert 0.0 <= v[m] <= 1.0, (name, m)
            assert v["hit@1"] <= v["mrr@10"] <= v["hit@10"]
        assert "all" in res_["attribute"]
        for v in res_["attribute"].values():
            assert 0.0 <= v["precision@10"] <= 1.0 and 0.0 <= v["ndcg@10"] <= 1.0
    for mode in ("dense", "hybrid", "dense_min3", "hybrid_min3", "dense_scan", "dense_scan_min3", "encode_min3",
                 "bm25_scoring"):
        assert report["latency"][mode]["n"] > 0 and report["latency"][mode]["p50_ms"] > 0
    assert report["latency"]["before"] == "dense_scan"  # a tiny catalogue was scanned before issue 15
    assert "latency_p50_ratio_vs_before" in report["targets"]
    assert report["lexical_index"]["items"] > 0 and report["lexical_index"]["bytes_per_item"] > 0
    # the tiny bundle is split: its encoder is the pre-trained one, no second encoder to estimate
    assert report["bundle"]["split"] and report["bundle"]["search_space"] == "pretrained"
    assert report["second_encoder_estimate"] is None
    for t in report["targets"].values():
        assert set(t) >= {"value", "target", "met"}
    md = (tmp_path / "rep" / "search.md").read_text()
    assert "| system |" in md and report["served"] in md
    assert json.loads((tmp_path / "rep" / "search.json").read_text())["kind"] == "search"


def test_bundle_must_come_from_the_data(tiny_bundle, tmp_path):
    from click.testing import CliRunner

    from recengine.cli import cli

    # the default data (embedded MovieLens) is not what tiny_bundle was exported from
    res = CliRunner().invoke(cli, ["bench", "search", str(tiny_bundle), "--no-frozen", "--quiet"])
    assert res.exit_code != 0
    assert "fingerprint" in res.output + str(res.exception)
