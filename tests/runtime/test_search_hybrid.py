"""Hybrid search (issue 15): the BM25 index (recengine.lexical), the fusion, and `Engine.search` finding items by
their title on the lean bundle, including items added, replaced and removed live and after a compaction."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from recengine import neighbours
from recengine.lexical import FUZZY_WEIGHT, K1, B, LexicalIndex, edits1, tokens


def _bm25(tf: float, df: int, n: int, length: float, avg: float) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg))


def test_tokens_fold_case_and_accents():
    assert tokens("Pokémon: The FIRST Movie (1998)") == ["pokemon", "the", "first", "movie", "1998"]
    assert tokens("Sci-Fi, Mystery") == ["sci", "fi", "mystery"]
    assert tokens("   ") == []
    assert tokens("Cafe_Society x2") == tokens("Café_Society x2") == ["cafe", "society", "x2"]  # both paths


def test_bm25_scores_match_the_formula_on_a_hand_made_corpus():
    texts = ["red fox", "red red dog", "blue whale swims"]
    idx = LexicalIndex.build(texts)
    s = idx.scores("red", 3)
    avg = (2 + 3 + 3) / 3
    assert s[0] == pytest.approx(_bm25(1, 2, 3, 2, avg), rel=1e-5)
    assert s[1] == pytest.approx(_bm25(2, 2, 3, 3, avg), rel=1e-5)
    assert s[2] == 0.0
    assert idx.scores("whale red", 3)[2] == pytest.approx(_bm25(1, 1, 3, 3, avg), rel=1e-5)
    assert not idx.scores("nothing here", 3).any()


def test_remove_and_add_update_the_statistics():
    idx = LexicalIndex.build(["red fox", "red dog", "cat"])
    idx.remove(np.array([1]), ["red dog"])
    # now "red" occurs in 1 of 2 live items, mean length (2 + 1) / 2
    assert idx.scores("red", 3)[0] == pytest.approx(_bm25(1, 1, 2, 2, 1.5), rel=1e-5)
    idx.add(np.array([3]), ["red panda"])
    s = idx.scores("panda", 4)
    assert s[3] > 0 and not s[:3].any()
    assert idx.n_live == 3


def test_alive_rows_only_are_built():
    idx = LexicalIndex.build(["red fox", "red dog"], alive=np.array([True, False]))
    s = idx.scores("dog", 2)
    assert not s.any()
    assert idx.n_live == 1


def test_an_unknown_word_matches_the_indexed_words_one_edit_away():
    assert "story" in edits1("stroy") and "story" in edits1("sory") and "story" in edits1("storry")
    assert "story" not in edits1("story")
    idx = LexicalIndex.build(["toy story", "toy soldiers"])
    exact = idx.scores("story", 2)
    fuzzy = idx.scores("stroy", 2)
    assert fuzzy[0] == pytest.approx(FUZZY_WEIGHT * exact[0], rel=1e-5) and fuzzy[1] == 0
    assert not idx.scores("sto", 2).any()  # short tokens are never corrected


def test_fusions_on_hand_made_rankings():
    lex = np.array([0.0, 4.0, 0.0, 2.0, 0.0], np.float32)
    cos = np.array([0.9, 0.2, 0.8, 0.5, 0.1], np.float32)
    dense_rows = np.array([0, 2])

    def cosine(r):
        return cos[r]

    lex_rows = neighbours.lexical_top(lex, np.ones(5, bool), 10)
    assert lex_rows.tolist() == [1, 3]
    lex_scores = lex[lex_rows]

    def bm25(r):
        return lex[r]

    # sum: (cos + w * lex / max(lex)) / (1 + w): row 1 = 0.2 + 1.0, row 3 = 0.5 + 0.5, row 0 = 0.9, row 2 = 0.8
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 3, "sum", 1.0, power=1.0)
    assert r.rows.tolist() == [1, 3, 0]
    assert r.scores.tolist() == pytest.approx([0.6, 0.5, 0.45])
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 3, "sum", 0.25, power=1.0)
    assert r.rows.tolist() == [0, 2, 3]  # a small weight: the cosine leads
    # a dense row with a lexical score outside the lexical candidates still gets it
    r = neighbours.fuse(np.array([0, 3]), cos[[0, 3]], cosine, lex_rows[:1], lex_scores[:1], bm25, 3, "sum", 1.0,
                        power=1.0)
    assert r.rows.tolist() == [1, 3, 0] and r.scores[1] == pytest.approx(0.5)
    # rrf: ties of rank 1 in both lists broken by the order of the candidates (dense first)
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 4, "rrf")
    assert r.rows.tolist() == [0, 1, 2, 3]
    assert r.scores[0] == pytest.approx(1 / 61)
    # no lexical match: the dense ranking unchanged
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, np.zeros(0, np.int64), np.zeros(0, np.float32), bm25, 2)
    assert r.rows.tolist() == [0, 2]
    with pytest.raises(ValueError):
        neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 2, "max")
    # lexical_top honours the allowed rows
    assert neighbours.lexical_top(lex, np.array([True, False, True, True, True]), 10).tolist() == [3]
    # full: BM25 over max(best, full); the best match, of half the query, counts half: row 1 = (0.2 + 0.5) / 2
    # falls behind row 3 = (0.5 + 0.25) / 2
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 3, "sum", 1.0, full=8.0,
                        power=1.0)
    assert r.rows.tolist() == [0, 2, 3] and r.scores.tolist() == pytest.approx([0.45, 0.4, 0.375])
    # a full below the best match changes nothing
    r2 = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 3, "sum", 1.0, full=1.0,
                         power=1.0)
    assert r2.rows.tolist() == [1, 3, 0]
    # power 2 (served): the scaled BM25 squared, so a half-query match counts a quarter: row 1 =
    # (0.2 + 0.25) / 2 = 0.225 and row 3 = (0.5 + 0.0625) / 2 behind the cosines of rows 0 and 2
    r = neighbours.fuse(dense_rows, cos[dense_rows], cosine, lex_rows, lex_scores, bm25, 4, "sum", 1.0, full=8.0,
                        power=2.0)
    assert r.rows.tolist() == [0, 2, 3, 1] and r.scores.tolist() == pytest.approx([0.45, 0.4, 0.28125, 0.225])
    # a whole-query match keeps its full weight at any power
    assert neighbours.sum_scores(np.array([0.1], np.float32), np.array([8.0], np.float32), 8.0, 1.0, 8.0,
                                 2.0).tolist() == pytest.approx([0.55])
    assert (neighbours.LEXICAL_SCALE, neighbours.LEXICAL_POWER) == ("full", 2.0)


def test_full_is_the_sum_of_the_matchable_query_words_idf():
    idx = LexicalIndex.build(["toy story", "toy soldiers", "heat", "big hero"])
    n = 4

    def idf(df: int) -> float:
        return float(np.log1p((n - df + 0.5) / (df + 0.5)))

    # "toy" (df 2) + "story" (df 1); "zzz" occurs nowhere and counts nothing
    assert idx.query("toy story zzz").full == pytest.approx(idf(2) + idf(1))
    # a misspelt word counts at FUZZY_WEIGHT x its best neighbour's idf, once
    assert idx.query("toy stroy").full == pytest.approx(idf(2) + FUZZY_WEIGHT * idf(1))
    assert idx.query("zzz").full == 0.0
    # an item of average length holding every query word once scores exactly `full`
    same = LexicalIndex.build(["toy story", "toy soldiers", "big hero"])
    assert same.scores("toy story", 3)[0] == pytest.approx(same.query("toy story").full, rel=1e-6)


def _title(text: str) -> str:
    line = next(x for x in text.split("\n") if x.startswith("title: "))
    return re.sub(r"\s*\(\d{4}\)$", "", line[len("title: "):])


@pytest.fixture()
def engine(lean_bundle):
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1)


def test_known_item_query_returns_its_item_first(engine):
    """Every title that names one item only (its words are not all in another title: "Heart Train" vs
    "Heart Train Dawn" is a tie the random lean encoder may break either way) finds that item first."""
    st = engine._state
    titles = [_title(t) for t in st.catalogue.texts]
    words = [set(tokens(t)) for t in titles]
    unique = [(st.catalogue.ids[r], t) for r, t in enumerate(titles)
              if not any(words[r] <= w for j, w in enumerate(words) if j != r)]
    assert len(unique) >= 20
    for item_id, title in unique:
        assert engine.search(title, k=5)[0].item_id == item_id, title
        assert engine.search(title.lower(), k=5)[0].item_id == item_id, title


NEW = {"item_id": "live-1", "title": "Zyzzyva Quokka Marmalade (2031)", "genres": "Sci-Fi"}


def test_an_item_added_live_is_found_by_its_title_at_once_and_forgotten_when_removed(engine):
    assert "live-1" not in [r.item_id for r in engine.search("Zyzzyva Quokka Marmalade", k=10)]
    engine.add_items([NEW])
    assert engine.search("Zyzzyva Quokka Marmalade", k=3)[0].item_id == "live-1"
    assert engine.search("zyzzyva quokka marmelade", k=3)[0].item_id == "live-1"  # a typo
    # replaced: the new title finds it, the old words no longer score
    engine.add_items([dict(NEW, title="Xylophone Wombat Saga (2032)")])
    assert engine.search("Xylophone Wombat Saga", k=3)[0].item_id == "live-1"
    st = engine._state
    assert not st.lexical.scores("Zyzzyva", st.catalogue.n_rows)[st.catalogue.alive].any()
    engine.remove_items(["live-1"])
    assert "live-1" not in [r.item_id for r in engine.search("Xylophone Wombat Saga", k=10)]


def test_the_lexical_index_survives_compaction(engine):
    from recengine import live

    engine.add_items([NEW])
    victims = engine.item_ids()[:30]
    engine.remove_items(victims)
    st = live.compacted(engine._state)
    assert st.catalogue.n_rows == st.catalogue.n_alive
    assert st.lexical is not None and st.lexical.n_live == st.catalogue.n_alive
    r = neighbours.search(st, "Zyzzyva Quokka Marmalade", 3, None)
    assert st.catalogue.ids[int(r.rows[0])] == "live-1"
    found = {st.catalogue.ids[int(x)] for x in neighbours.search(st, "a", 50, None).rows}
    assert not found & set(victims)


def test_dense_mode_is_the_text_space_alone(engine):
    st = engine._state
    emb, _ = st.models.encode_batch(["Zyzzyva"])
    r = neighbours.search_embedded(st, emb[0], "Zyzzyva", 5, None, mode="dense")
    cos = st.catalogue.text_embeddings @ emb[0]
    assert r.rows.tolist() == np.argsort(-cos, kind="stable")[:5].tolist()


def test_a_search_text_past_the_cap_is_refused_not_slowly_tokenised(engine):
    """A 1 MB text cost 0.7-1.8 s a search for words the encoder never reads: refused, with the limit named."""
    from recengine import RequestError
    from recengine.requests import MAX_QUERY_CHARS

    assert engine.search("heart " * (MAX_QUERY_CHARS // 6), k=3)  # within the cap: served
    with pytest.raises(RequestError, match=f"search text is {MAX_QUERY_CHARS + 1} characters long; at most "
                                           f"{MAX_QUERY_CHARS}"):
        engine.search("x" * (MAX_QUERY_CHARS + 1), k=3)
