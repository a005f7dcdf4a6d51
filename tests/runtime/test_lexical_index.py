"""The compact BM25 index (recengine.lexical): scores against an independent BM25, the pruned top-n against
the full ranking, live adds/removes (delta segment and its merge) against a fresh build, and its memory."""

from __future__ import annotations

import math
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from recengine import lexical, neighbours
from recengine.lexical import K1, B, LexicalIndex, tokens

COMMON = ["title", "genres", "the", "comedy", "drama"]
RARE = [f"w{i}" for i in range(400)]


def _corpus(n: int, seed: int) -> list[str]:
    """Texts with a few words in (nearly) every text and a Zipf tail, some repeated within a text."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, len(RARE) + 1)
    zipf /= zipf.sum()
    out = []
    for i in range(n):
        words = ["title"] + [str(w) for w in rng.choice(RARE, size=int(rng.integers(1, 6)), p=zipf)]
        words += [str(w) for w in rng.choice(COMMON[1:], size=int(rng.integers(0, 3)))]
        if i % 7 == 0:
            words.append(f"serial{i}")
        out.append(" ".join(words) + ("\ngenres: Café" if i % 11 == 0 else ""))
    return out


def _one_edit(a: str, b: str) -> bool:
    """True when `a` and `b` are one deletion, insertion, substitution or adjacent transposition apart."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _reference(texts: list[str], live: np.ndarray, query: str) -> np.ndarray:
    """BM25 written out from the definition over the live texts; an unknown query word of 4+ characters
    counts every live word one edit away at FUZZY_WEIGHT."""
    docs = [Counter(tokens(t)) for t in texts]
    n = int(live.sum())
    avg = sum(sum(d.values()) for d, a in zip(docs, live) if a) / n
    vocab = {w for d, a in zip(docs, live) if a for w in d}
    weights: Counter[str] = Counter()
    for word in tokens(query):
        if word in vocab or len(word) < 4:
            weights[word] += 1.0
        else:
            for near in vocab:
                if _one_edit(word, near):
                    weights[near] += lexical.FUZZY_WEIGHT
    out = np.zeros(len(texts))
    for word, w in weights.items():
        df = sum(1 for d, a in zip(docs, live) if a and word in d)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for r, d in enumerate(docs):
            tf = d.get(word, 0)
            if tf:
                out[r] += w * idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * sum(d.values()) / avg))
    return out


QUERIES = ["title w0", "titel w0", "w1 genre", "w3 w17 comedy", "the the w1", "w250", "title genres the", "cafe w2 w2",
           "serial14", "w5 w6 w7 w8 w9 title drama", "nothing here", "title"]


def test_scores_match_an_independent_bm25():
    texts = _corpus(300, 0)
    idx = LexicalIndex.build(texts)
    live = np.ones(len(texts), bool)
    for q in QUERIES:
        np.testing.assert_allclose(idx.scores(q, len(texts)), _reference(texts, live, q), rtol=2e-5, atol=1e-6)


TOP_PATHS = {"dense": (1 << 20, 1 << 30), "maxscore": (0, 1 << 30), "impact": (0, 50)}
"""Ways `LexicalQuery.top` takes the top n: (DENSE_ROWS, LONG_LIST) that select each on these corpora."""


def _path(monkeypatch, path: str) -> None:
    dense_rows, long_list = TOP_PATHS[path]
    monkeypatch.setattr(lexical, "DENSE_ROWS", dense_rows)
    monkeypatch.setattr(lexical, "LONG_LIST", long_list)


@pytest.mark.parametrize("path", TOP_PATHS)
@pytest.mark.parametrize("n", [1, 5, 40, 1000])
def test_pruned_top_is_the_exact_top(n, path, monkeypatch):
    """Every way of taking the top n (one dense array; MaxScore over sparse candidates; long lists by their
    impact order) gives the full ranking."""
    _path(monkeypatch, path)
    texts = _corpus(2000, 1)
    idx = LexicalIndex.build(texts)
    rng = np.random.default_rng(2)
    for q in QUERIES + ["tittle w0", "w12 commedy"]:
        for ok in (np.ones(len(texts), bool), rng.random(len(texts)) < 0.3):
            lq = idx.query(q)
            dense = lq.dense(len(texts))
            rows, scores = lq.top(n, ok)
            expect = neighbours.lexical_top(dense, ok, n)
            assert rows.tolist() == expect.tolist(), q
            np.testing.assert_allclose(scores, dense[rows], rtol=1e-5)
            some = rng.integers(0, len(texts), 50)  # unsorted, repeated, int64
            np.testing.assert_allclose(lq.score(some), dense[some], rtol=1e-5)
            np.testing.assert_array_equal(lq.score(rows), scores)  # the same float32 sums as `top`'s
            assert not lq.score(np.array([len(texts) + 7, 10**6])).any()  # rows past the index: no postings
    empty = LexicalIndex.build([]).query("title w0")
    assert empty.score(np.array([0, 3])).tolist() == [0.0, 0.0]  # an empty index scores nothing, raises nothing
    assert bool(idx._impact._orders) == (path == "impact")  # the path was taken (and caches its orders)


@pytest.mark.parametrize("path", TOP_PATHS)
def test_a_shorter_ok_view_skips_the_rows_beyond_it(path, monkeypatch):
    _path(monkeypatch, path)
    texts = _corpus(500, 3)
    idx = LexicalIndex.build(texts)
    rows, _ = idx.query("title w0").top(1000, np.ones(200, bool))
    assert rows.size and rows.max() < 200


@pytest.mark.parametrize("path", TOP_PATHS)
def test_live_adds_and_removes_score_like_a_fresh_build(path, monkeypatch):
    _path(monkeypatch, path)
    monkeypatch.setattr(lexical, "DELTA_MIN", 200)  # small enough that the delta is merged along the way
    texts = _corpus(3000, 4)
    idx = LexicalIndex.build(texts[:1000])
    live = np.zeros(len(texts), bool)
    live[:1000] = True
    rng = np.random.default_rng(5)
    merged = had_delta = False
    for start in range(1000, 3000, 250):
        rows = np.arange(start, start + 250)
        idx.add(rows, texts[start: start + 250])
        live[rows] = True
        merged |= idx._delta.n_postings == 0
        had_delta |= idx._delta.n_postings > 0
        gone = rng.choice(np.flatnonzero(live), 40, replace=False)
        idx.remove(gone, [texts[r] for r in gone.tolist()])
        live[gone] = False
        fresh = LexicalIndex.build(texts[: start + 250], live[: start + 250])
        assert idx.n_live == fresh.n_live == int(live.sum())
        for q in QUERIES:
            got = idx.query(q)
            want = fresh.query(q).dense(start + 250)
            ok = live[: start + 250]
            np.testing.assert_allclose(got.dense(start + 250)[ok], want[ok], rtol=2e-5, atol=1e-6)
            assert got.top(20, ok)[0].tolist() == neighbours.lexical_top(want, ok, 20).tolist(), q
            assert got.top(20, ok)[0].tolist() == neighbours.lexical_top(want, ok, 20).tolist(), q  # cached order
    assert merged and had_delta  # both states were checked


def test_every_write_starts_a_new_impact_cache(monkeypatch):
    """The impact order depends on every row's length norm, which each write changes: orders computed before
    a write are never used after it."""
    _path(monkeypatch, "impact")
    texts = _corpus(600, 6)
    idx = LexicalIndex.build(texts)
    idx.query("comedy").top(10, None)
    before = idx._impact
    assert before._orders
    idx.add(np.array([600]), ["comedy comedy comedy"])
    assert idx._impact is not before and not idx._impact._orders
    got = idx.query("comedy").top(3, None)[0]
    assert got[0] == 600 and got.tolist() == neighbours.lexical_top(idx.scores("comedy", 601),
                                                                     np.ones(601, bool), 3).tolist()
    cache = idx._impact
    idx.remove(np.array([600]), ["comedy comedy comedy"])
    assert idx._impact is not cache


def test_a_word_whose_items_are_all_removed_is_unknown_again():
    idx = LexicalIndex.build(["toy story", "toy soldiers", "zebra"])
    idx.remove(np.array([2]), ["zebra"])
    assert idx.expand(["zebra"]) == {}  # 5 letters, no live item: fuzzy candidates only, none live
    assert idx.query("zebra").empty
    idx.add(np.array([3]), ["zebra crossing"])
    assert idx.query("zebra").top(5, np.array([True, True, False, True]))[0].tolist() == [3]


def test_memory_is_a_few_bytes_per_posting():
    """No per-token Python objects: one unique word per text costs bytes, not a numpy array and a dict entry
    (the first index held ~1.3 KB per item on such a catalogue)."""
    texts = [f"title: film {i} about the city #{i}" for i in range(20_000)]
    tracemalloc.start()
    idx = LexicalIndex.build(texts)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert idx.n_tokens > 20_000
    assert held / len(texts) < 200, held / len(texts)
    assert idx.nbytes() <= held


def test_only_the_first_unknown_words_are_matched_one_edit_away():
    idx = LexicalIndex.build(["alpha beta gamma", "delta"])
    assert idx.expand(["alpah"]) == {"alpha": lexical.FUZZY_WEIGHT}
    gibberish = [f"zzzq{i}" for i in range(lexical.FUZZY_MAX_WORDS)]
    assert "alpha" not in idx.expand(gibberish + ["alpah"])  # the budget is spent
    assert "alpha" in idx.expand(gibberish[:-1] + ["alpah"])


def test_very_long_unknown_words_are_not_expanded():
    """A hostile query word of thousands of characters must cost what its length does, not ~72 L^2 bytes of
    edit candidates (a fuzzer's 4,096-character word took 1.2 GB and 3 s before the cap)."""
    word = "a" * lexical.FUZZY_MAX_LEN
    idx = LexicalIndex.build([word, "delta"])
    assert idx.expand([word[:-1] + "b"]) == {word: lexical.FUZZY_WEIGHT}  # at the cap: still one edit away
    long = "q" * (lexical.FUZZY_MAX_LEN + 1)
    assert idx.expand([long]) == {long: 1.0}
    huge = "x" * 200_000
    assert idx.expand([huge]) == {huge: 1.0} and idx.query(huge + " delta").top(5, None)[0].tolist() == [1]


def test_the_impact_order_keeps_the_lower_row_of_a_score_tie():
    """The cached key tf / (tf + norm) and the score c * tf / (tf + norm) round apart in float32: two postings
    whose keys differ by an ulp can score the same, and the lower row must still come first. Found by search
    over (tf, norm, c) as a reviewer did; row 0 gets the posting with the lower key."""
    from recengine.lexical import ImpactCache, LexicalQuery, _List

    rng = np.random.default_rng(1)
    tf, ln = (a.ravel() for a in np.meshgrid(np.arange(1, 6, dtype=np.float32), np.arange(1, 300, dtype=np.float32)))
    found = None
    for avg in rng.uniform(3, 60, 200).astype(np.float32):
        norm = (K1 * (1.0 - B + B * ln / avg)).astype(np.float32)
        key = tf / (tf + norm)
        o = np.argsort(-key, kind="stable")
        for coef in rng.uniform(0.001, 8, 20):
            part = (np.float32(coef * (K1 + 1)) * tf / (tf + norm)).astype(np.float32)
            i = np.flatnonzero((np.diff(part[o]) == 0) & (np.diff(key[o]) < 0))
            if i.size:
                found = (o[i[0]], o[i[0] + 1], norm, float(coef))
                break
        if found:
            break
    assert found is not None
    hi, lo, norm_grid, coef = found
    n_rows = 40_000
    tfs = np.ones(n_rows, np.uint16)
    norm = np.full(n_rows, 50.0, np.float32)  # the other rows score far below
    tfs[0], norm[0] = tf[lo], norm_grid[lo]
    tfs[1], norm[1] = tf[hi], norm_grid[hi]
    lq = LexicalQuery([_List(np.arange(n_rows, dtype=np.int32), tfs, coef, 1.0, (0, 0))], norm,
                      impact=ImpactCache())
    want = neighbours.lexical_top(lq.dense(n_rows), np.ones(n_rows, bool), 2)
    assert lq.top(1, None)[0].tolist() == want[:1].tolist() == [0]
    assert lq.top(2, None)[0].tolist() == want.tolist()
