"""A small BM25 index over item text, for exact-word matches in `search` (hybrid with the dense text space).

Why: the fine-tuned encoder's `text_embedding` is pulled towards the interaction graph, so a query that
names an item ("toy story") may not find it first by cosine alone; a lexical score finds the words
themselves. `recengine.neighbours.search` fuses the two rankings.

Layout (compact, no per-token Python objects; issue 15 measured 140 MiB at 110k items with one numpy array
per token): a `Segment` is a CSR posting table, tokens as sorted 64-bit hashes (`keys`), `offsets` into one
`rows` int32 array (ascending within a token) and one `tf` uint16 array, plus per token the largest tf and
the shortest document (upper bounds for pruning). The index holds a base segment (built at open or
compaction) and a delta segment of the rows added live since, merged into the base when it passes
`DELTA_FRACTION` of it, plus the vocabulary's live document frequencies and per-row document lengths.
Rows are catalogue rows; a removed row keeps its postings (the catalogue never reuses rows) and is masked at
query time by the caller's `ok` rows, while document frequencies and the mean length count live rows only.
A compaction builds a new index over the compacted catalogue (`LexicalIndex.build`).

Token hashes are Python's `hash(str)` (salted per process; the index is built in memory, never stored): 8
bytes per token instead of a dict entry and a str object. Two tokens of one catalogue sharing a 64-bit hash
(about 1e-8 at a million tokens) would be scored as one token.

Tokens: NFKD-folded (accents dropped), lower-cased runs of letters/digits ("Pokémon" -> "pokemon").
Scoring: Okapi BM25, k1=1.2, b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), computed exactly at query
time from the current statistics.
Top-n (`LexicalQuery.top`): up to `DENSE_ROWS` catalogue rows, one dense score array; beyond, MaxScore
pruning. Posting lists are taken by decreasing score upper bound; once the n-th best partial score exceeds
what the lists left could add together, no row outside the candidates can enter the top n, and the lists
left (the common words: "the", a genre) are looked up for the candidates only (binary search) instead of
being scanned. A query of one word with more than `LONG_LIST` postings ("drama") reads its lists (one per
segment) in their impact order instead (`ImpactCache`: cached per list until the next write), so it takes
about n postings rather than scoring lists half the catalogue long. (With several words a prefix of each
list's impact order rarely settles the top n, measured up to 10x slower than MaxScore: not used.) The result
is the exact top n over the query's words, less the words `NEGLIGIBLE` leaves out (a word in virtually every
item, like "title": its weight is ~0).
Typos: a query token of >= 4 characters that no live item contains is matched to the indexed tokens one
edit away (a deletion, insertion, substitution or transposition; the candidates are generated from the
query token and looked up, so this costs no memory), each counted at `FUZZY_WEIGHT` of its BM25 score.
Writers (`add`, `remove`) run under the engine's write lock and replace arrays whole, so a reader under the
read lock always sees complete, consistent arrays.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_WORD_OR_SEP = re.compile(r"[^\W_]+|\x00", re.UNICODE)
_ASCII_WORD_OR_SEP = re.compile(r"[a-z0-9]+|\x00")
"""The same words in lower-cased ASCII text (letters and digits are all [^\\W_] matches there), 2x faster."""
K1 = 1.2
B = 0.75
FUZZY_WEIGHT = 0.7
FUZZY_MIN_LEN = 4
FUZZY_MAX_WORDS = 8
"""Unknown query words matched one edit away, at most (each costs ~0.5 ms of candidate lookups: a long
query of gibberish must not cost seconds); the unknown words beyond match nothing."""
FUZZY_MAX_LEN = 32
"""Unknown words longer than this are not matched one edit away: `edits1` makes ~72 L candidates of length ~L
(a 4,096-character word: ~1.2 GB and 3 s per query, measured by a fuzzer), and no catalogue word that long is
a typing slip of another."""
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
DELTA_FRACTION = 0.125
"""The delta segment (rows added live) is merged into the base once it holds this share of the base's
postings (and at least `DELTA_MIN` postings): each add rebuilds only the delta, and every posting is copied
O(1/DELTA_FRACTION) times over the index's life."""
DELTA_MIN = 65_536
BUILD_CHUNK = 16_384
"""Texts tokenised per step of `build`/`add` (bounds the transient token lists)."""
TF_MAX = np.iinfo(np.uint16).max
LONG_LIST = 4_096
"""`LexicalQuery.top` beyond `DENSE_ROWS` takes the one posting list of a one-word query by its impact order
(cached, `ImpactCache`) when it is longer than this, instead of scoring it whole: a word in half of a 110k
catalogue ("drama") cost 0.3 ms a query to score and partition."""
DENSE_ROWS = 32_768
"""`LexicalQuery.top` over at most this many rows scores into one dense array (a few µs to clear and scan),
beyond it with MaxScore over sparse candidates (the dense array's clear and scan grow with the catalogue)."""
NEGLIGIBLE = 1e-5
"""A query word whose largest possible BM25 contribution is below this share of the query's strongest
word's is left out of the query: a word in (nearly) every item, like the "title" every catalogue line
starts with (idf ~ 0.5 / N: at 110k items ~1e-6 of a title word's weight), changes no ranking but would
cost a lookup over a posting list as long as the catalogue."""


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """Lower-cased, accent-folded word tokens of `text`."""
    if text.isascii():  # nothing to fold (most catalogue texts): 3x faster
        return _WORD.findall(text.lower())
    return _WORD.findall(_fold(text).lower())


def edits1(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion (over a-z, 0-9) from `word`."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in _ALPHABET}
    out |= {a + c + b for a, b in splits for c in _ALPHABET}
    out.discard(word)
    return out


def token_hashes(words: Sequence[str]) -> np.ndarray:
    """The uint64 keys of `words` (Python's str hash, as the index stores them)."""
    return np.fromiter(map(hash, words), np.int64, len(words)).view(np.uint64)


@dataclass(frozen=True)
class Segment:
    """An immutable CSR posting table: token `keys[i]` occurs in `rows[offsets[i]:offsets[i+1]]` (ascending)
    with term frequencies `tf[...]`; `max_tf[i]` / `min_len[i]` bound its BM25 contribution."""

    keys: np.ndarray  # uint64 [V], sorted, unique
    offsets: np.ndarray  # int64 [V + 1]
    rows: np.ndarray  # int32 [P]
    tf: np.ndarray  # uint16 [P]
    max_tf: np.ndarray  # uint16 [V]
    min_len: np.ndarray  # float32 [V]

    @property
    def n_postings(self) -> int:
        return int(self.rows.size)

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.keys, self.offsets, self.rows, self.tf, self.max_tf, self.min_len)))

    @classmethod
    def from_postings(cls, keys: np.ndarray, rows: np.ndarray, tf: np.ndarray, lengths: np.ndarray) -> Segment:
        """A segment of postings already sorted by (key, row); `lengths` = document length of every row."""
        if keys.size == 0:
            return cls.empty()
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        offsets = np.append(starts, keys.size).astype(np.int64)
        return cls(keys=keys[starts], offsets=offsets, rows=rows.astype(np.int32, copy=False),
                   tf=tf.astype(np.uint16, copy=False), max_tf=np.maximum.reduceat(tf, starts).astype(np.uint16),
                   min_len=np.minimum.reduceat(lengths[rows], starts).astype(np.float32))

    @classmethod
    def empty(cls) -> Segment:
        return cls(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint16),
                   np.zeros(0, np.uint16), np.zeros(0, np.float32))

    def postings_per_key(self) -> np.ndarray:
        """The key of every posting (uint64 [P])."""
        return np.repeat(self.keys, np.diff(self.offsets))

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of `keys` in this segment and whether each is there."""
        pos = np.searchsorted(self.keys, keys)
        clipped = np.minimum(pos, max(self.keys.size - 1, 0))
        found = (pos < self.keys.size) & (self.keys[clipped] == keys) if self.keys.size else np.zeros(keys.size, bool)
        return clipped, found


def merge(a: Segment, b: Segment, lengths: np.ndarray) -> Segment:
    """One segment holding `a`'s and `b`'s postings; every row of `b` is beyond every row of `a` (rows are
    appended), so a stable sort by key (a merge of two sorted runs) keeps rows ascending within a token."""
    if b.n_postings == 0:
        return a
    if a.n_postings == 0:
        return b
    keys = np.concatenate([a.postings_per_key(), b.postings_per_key()])
    order = np.argsort(keys, kind="stable")
    return Segment.from_postings(keys[order], np.concatenate([a.rows, b.rows])[order],
                                 np.concatenate([a.tf, b.tf])[order], lengths)


@dataclass(frozen=True)
class _Parsed:
    """The postings of a batch of texts, sorted by (key, row), and what the statistics need."""

    keys: np.ndarray  # uint64 [P]
    rows: np.ndarray  # int64 [P]
    tf: np.ndarray  # uint16 [P]
    doc_len: np.ndarray  # float32 [n texts]


def _parse(rows: np.ndarray, texts: Sequence[str]) -> _Parsed:
    """Tokenise `texts` (catalogue rows `rows`) in chunks into sorted (key, row, tf) postings. The words of a
    chunk are found by one regex pass over the joined chunk and numbered by a C-level dict lookup (`map`),
    about 4x faster than tokenising text by text."""
    vocab: dict[str, int] = {"\x00": 0}
    tok_parts, row_parts = [], []
    doc_len = np.zeros(len(texts), np.float32)
    for s in range(0, len(texts), BUILD_CHUNK):
        chunk = [t if t.isascii() else _fold(t) for t in texts[s: s + BUILD_CHUNK]]
        if any("\x00" in t for t in chunk):  # the separator itself: replaced, it is no word character anyway
            chunk = [t.replace("\x00", " ") for t in chunk]
        joined = "\x00".join(chunk).lower()
        words = (_ASCII_WORD_OR_SEP if joined.isascii() else _WORD_OR_SEP).findall(joined)
        for w in dict.fromkeys(words):
            if w not in vocab:
                vocab[w] = len(vocab)
        ids = np.fromiter(map(vocab.__getitem__, words), np.int64, len(words))
        sep = ids == 0
        local = np.cumsum(sep)  # text index within the chunk of every word
        keep = ~sep
        tok_parts.append(ids[keep])
        row_parts.append(local[keep] + s)
        doc_len[s: s + len(chunk)] = np.bincount(local[keep], minlength=len(chunk))
    hashes = token_hashes(list(vocab))
    uniq, inverse = np.unique(hashes, return_inverse=True)  # sorted keys; a (vanishingly rare) collision merges
    tok = inverse[np.concatenate(tok_parts)] if tok_parts else np.zeros(0, np.int64)
    local_rows = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
    n = max(len(texts), 1)
    pair, tf = np.unique(tok * n + local_rows, return_counts=True)  # sorted by (key rank, text index)
    return _Parsed(keys=uniq[pair // n], rows=np.asarray(rows, np.int64)[pair % n],
                   tf=np.minimum(tf, TF_MAX).astype(np.uint16), doc_len=doc_len)


@dataclass(frozen=True)
class _List:
    """One posting list of one query term in one segment."""

    rows: np.ndarray
    tf: np.ndarray
    coef: float  # query weight x idf
    bound: float  # upper bound of coef x BM25 tf part over the list
    key: tuple[int, int] | None = None  # (id of its segment, token position): its entry in the impact cache
    term: int = -1  # which query word it belongs to (one word has a list in the base and one in the delta)


class ImpactCache:
    """Long posting lists' postings in decreasing order of their BM25 contribution, computed on first use and
    kept until the next write (every write changes the length norms the order depends on, and replaces the
    index's cache). Per list ordered: its positions (int32) and their keys tf / (tf + norm) (float32), so at
    most 8 B per posting of the lists queried; only the lists of one-word queries of more than `LONG_LIST`
    postings (all segments together) are ordered.
    Readers may fill it concurrently: two threads computing the same order store equal arrays."""

    def __init__(self) -> None:
        self._orders: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def order(self, lst: _List, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in `lst` by decreasing tf / (tf + norm[row]) (ties: lower row first), and those keys."""
        assert lst.key is not None
        got = self._orders.get(lst.key)
        if got is None:
            tf = lst.tf.astype(np.float32)
            key = tf / (tf + norm[lst.rows])
            order = np.argsort(-key, kind="stable").astype(np.int32)
            got = (order, key[order])
            self._orders[lst.key] = got
        return got

    def nbytes(self) -> int:
        return int(sum(o.nbytes + k.nbytes for o, k in list(self._orders.values())))


class LexicalQuery:
    """A query resolved against one consistent view of the index (take it under the read lock)."""

    def __init__(self, lists: list[_List], norm: np.ndarray, groups: list[list[tuple[str, float]]] | None = None,
                 idf: dict[str, float] | None = None, impact: ImpactCache | None = None) -> None:
        top = max((x.bound for x in lists), default=0.0)
        self._lists = sorted((x for x in lists if x.bound >= NEGLIGIBLE * top), key=lambda x: -x.bound)
        self._norm = norm
        self._impact = impact
        self._groups = groups or []
        self._idf = idf or {}

    @property
    def full(self) -> float:
        """BM25 of an average-length item holding every query word that occurs in the catalogue once (BM25's
        tf part is 1 there: the sum of their idf; a misspelt word counts at its best one-edit neighbour's
        `FUZZY_WEIGHT` x idf). Computed when asked: only the "full" fusion scale reads it."""
        return float(sum(max(f * self._idf[w] for w, f in g) for g in self._groups))

    @property
    def empty(self) -> bool:
        return not self._lists

    def _part(self, lst: _List, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
        f = tf.astype(np.float32)
        return (np.float32(lst.coef * (K1 + 1.0)) * f / (f + self._norm[rows])).astype(np.float32, copy=False)

    @staticmethod
    def _tf_at(lst: _List, rows: np.ndarray) -> np.ndarray:
        """This list's term frequency at `rows` (any order, the lists' int32; 0 where a row is not in it), by
        binary search. The needles must share the list's dtype: np.searchsorted casts both sides to a common
        type, and int64 needles made it copy the whole (int32) list on every call (3x slower at 20k)."""
        if lst.rows.size == 0:
            return np.zeros(rows.size, np.uint16)
        pos = np.searchsorted(lst.rows, rows)
        return np.where(lst.rows.take(pos, mode="clip") == rows, lst.tf.take(pos, mode="clip"), 0)

    def _add_at(self, lst: _List, rows: np.ndarray, scores: np.ndarray) -> None:
        """scores += this list's contribution at `rows`."""
        if rows.size == 0:
            return
        tf = self._tf_at(lst, rows.astype(np.int32, copy=False))
        hit = tf > 0
        if hit.any():
            scores[hit] += self._part(lst, rows[hit], tf[hit])

    def score(self, rows: np.ndarray) -> np.ndarray:
        """BM25 of the given catalogue rows (any order; 0 where no query token occurs). Summed list by list
        in the order `top` adds them, so a row scores the same float32 value here as there."""
        rows32 = np.asarray(rows).astype(np.int32, copy=False)
        acc = np.zeros(rows32.size, np.float32)
        if rows32.size == 0 or self._norm.size == 0:  # nothing asked, or an empty index: no postings
            return acc
        norm = self._norm.take(rows32, mode="clip")  # a row past the index has no postings: f = 0 there
        for lst in self._lists:
            f = self._tf_at(lst, rows32).astype(np.float32)
            acc += np.float32(lst.coef * (K1 + 1.0)) * f / (f + norm)
        return acc

    def dense(self, n_rows: int) -> np.ndarray:
        """BM25 of every row below `n_rows` (the reference `top` is tested against)."""
        out = np.zeros(n_rows, np.float32)
        for lst in self._lists:
            rows, tf = lst.rows, lst.tf
            if rows.size and int(rows[-1]) >= n_rows:  # rows ascend: cut those beyond the view
                cut = int(np.searchsorted(rows, n_rows))
                rows, tf = rows[:cut], tf[:cut]
            out[rows] += self._part(lst, rows, tf)
        return out

    def top(self, n: int, ok: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The `n` best rows among `ok` rows (None: every indexed row) with a positive score, best first (ties:
        lower row first), and their scores. Exact (MaxScore pruning, see the module docstring)."""
        if n <= 0 or not self._lists:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        n_ok = self._norm.size if ok is None else ok.size
        if n_ok <= DENSE_ROWS:
            return self._top_dense(n, ok, n_ok)
        if (self._impact is not None and len({x.term for x in self._lists}) == 1 and self._lists[0].term >= 0
                and sum(x.rows.size for x in self._lists) > LONG_LIST and all(x.key is not None for x in self._lists)):
            return self._top_impact(n, ok, n_ok)
        suffix = np.cumsum([x.bound for x in self._lists][::-1])[::-1].tolist() + [0.0]
        cand = np.zeros(0, np.int64)
        acc = np.zeros(0, np.float32)
        theta = -1.0
        rest = len(self._lists)
        for i, lst in enumerate(self._lists):
            rows = lst.rows
            if rows.size and int(rows[-1]) >= n_ok:  # a caller's older, shorter view of the catalogue
                rows = rows[: int(np.searchsorted(rows, n_ok))]
            tf = lst.tf[: rows.size]
            if ok is not None:
                keep = ok[rows]
                rows, tf = rows[keep], tf[keep]
            rows = rows.astype(np.int64)
            part = self._part(lst, rows, tf)
            if cand.size == 0:
                cand, acc = rows, part
            elif rows.size:
                cand, acc = _union_sum(cand, acc, rows, part)
            if i + 1 < len(self._lists) and cand.size >= n:
                theta = float(-np.partition(-acc, n - 1)[n - 1])
                if suffix[i + 1] < theta:  # no row outside `cand` can reach the top n any more
                    rest = i + 1
                    break
        if rest < len(self._lists):
            live = acc + np.float32(suffix[rest]) >= np.float32(theta)
            cand, acc = cand[live], acc[live].copy()
            for lst in self._lists[rest:]:
                self._add_at(lst, cand, acc)
        return _best(cand, acc, n)

    def _top_impact(self, n: int, ok: np.ndarray | None, n_ok: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top n of a one-word query by its lists' impact orders (`ImpactCache`; one list per segment,
        the same word, so one coefficient and comparable keys): prefixes of m postings of each, m grown until
        they hold n rows that pass; the n-th best key among them is at most the true n-th best, so every
        posting whose key reaches it (less `_KEY_SLACK`: the key and the score, a constant times it, may round
        apart by an ulp) is a candidate, found per list by binary search in its sorted keys; those are scored
        and ranked as everywhere else (`_best`: ties lower row first)."""
        assert self._impact is not None
        lists = self._lists
        orders = [self._impact.order(x, self._norm) for x in lists]
        floor = -np.inf
        m = max(2 * n, 64)
        while True:
            kept = []
            for lst, (order, keys) in zip(lists, orders):
                rows = lst.rows[order[:m]].astype(np.int64)
                kept.append(keys[:m][_passes(rows, ok, n_ok)])
            passing = np.concatenate(kept)
            if passing.size >= n:  # the true n-th best key is at least this one: a floor for the candidates
                floor = float(-np.partition(-passing, n - 1)[n - 1]) * (1.0 - _KEY_SLACK)
                break
            if all(m >= o.size for o, _ in orders):  # fewer than n rows pass: every one of them
                break
            m *= 4
        rows_out, acc_out = [], []
        for lst, (order, keys) in zip(lists, orders):
            cut = order.size if floor == -np.inf else int(np.searchsorted(-keys, -floor, side="right"))
            at = order[:cut]
            at = at[_passes(lst.rows[at].astype(np.int64), ok, n_ok)]
            rows_out.append(lst.rows[at].astype(np.int64))
            acc_out.append(self._part(lst, lst.rows[at], lst.tf[at]))
        cand, acc = np.concatenate(rows_out), np.concatenate(acc_out)
        by_row = np.argsort(cand, kind="stable")
        cand, acc = cand[by_row], acc[by_row]
        if cand.size > 1 and bool((cand[1:] == cand[:-1]).any()):  # a row in two segments' lists: add up
            starts = np.flatnonzero(np.concatenate([[True], cand[1:] != cand[:-1]]))
            cand, acc = cand[starts], np.add.reduceat(acc, starts).astype(np.float32)
        return _best(cand, acc, n)

    def _top_dense(self, n: int, ok: np.ndarray | None, n_ok: int) -> tuple[np.ndarray, np.ndarray]:
        out = self.dense(n_ok)
        cand = np.flatnonzero(out)
        if ok is not None:
            cand = cand[ok[cand]]
        return _best(cand, out[cand], n)


_KEY_SLACK = 1e-6
"""Relative slack on an impact key: the cached key tf / (tf + norm) and the score c * tf / (tf + norm) round
separately in float32 (~6e-8 each), so postings whose keys are this close to the n-th may score a tie."""


def _passes(rows: np.ndarray, ok: np.ndarray | None, n_ok: int) -> np.ndarray:
    """Which `rows` are within the caller's view (< n_ok) and allowed by `ok`."""
    keep = rows < n_ok
    if ok is not None:
        keep[keep] &= ok[rows[keep]]
    return keep


def _best(cand: np.ndarray, acc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best of ascending rows `cand` (scores `acc`), best first; of rows tied with the n-th, the
    lowest."""
    if cand.size > n:
        kth = -np.partition(-acc, n - 1)[n - 1]
        above = acc > kth
        tied = np.flatnonzero(acc == kth)[: n - int(above.sum())]
        above[tied] = True
        cand, acc = cand[above], acc[above]
    order = np.lexsort((cand, -acc))
    return cand[order].astype(np.int64, copy=False), acc[order]


def _union_sum(r1: np.ndarray, s1: np.ndarray, r2: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of two ascending unique row arrays, scores of shared rows added."""
    rows = np.concatenate([r1, r2])
    scores = np.concatenate([s1, s2])
    order = np.argsort(rows, kind="stable")  # two sorted runs: a linear merge
    rows, scores = rows[order], scores[order]
    starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
    if starts.size == rows.size:
        return rows, scores
    return rows[starts], np.add.reduceat(scores, starts).astype(np.float32, copy=False)


class LexicalIndex:
    """BM25 over the catalogue's item texts (rows = catalogue rows)."""

    def __init__(self) -> None:
        self._base = Segment.empty()
        self._delta = Segment.empty()
        self._keys = np.zeros(0, np.uint64)
        """Every token ever indexed (sorted hashes); `_df` its live document frequency."""
        self._df = np.zeros(0, np.int32)
        self._len = np.zeros(0, np.float32)
        self._norm = np.zeros(0, np.float32)
        """k1 * (1 - b + b * len / avg) of every row, recomputed by each write."""
        self._impact = ImpactCache()
        """Long lists' impact orders for the current norms and segments (a new one after every write)."""
        self.n_live = 0
        self.n_rows = 0
        """One past the highest row ever indexed."""
        self._total_len = 0.0

    @classmethod
    def build(cls, texts: Sequence[str], alive: np.ndarray | None = None) -> LexicalIndex:
        """An index of `texts` (row i = texts[i]); rows with alive[i] False are left out."""
        index = cls()
        rows = np.arange(len(texts)) if alive is None else np.flatnonzero(alive)
        index._extend_len(len(texts))
        index._add(rows, [texts[r] for r in rows.tolist()])
        return index

    @property
    def n_tokens(self) -> int:
        return int(self._keys.size)

    @property
    def n_postings(self) -> int:
        return self._base.n_postings + self._delta.n_postings

    def nbytes(self) -> int:
        """Bytes held by the index's arrays (all of its memory but a few Python objects)."""
        shared = self._keys is self._base.keys
        return int(self._base.nbytes() + self._delta.nbytes() + (0 if shared else self._keys.nbytes)
                   + self._df.nbytes + self._len.nbytes + self._norm.nbytes + self._impact.nbytes())

    def _extend_len(self, n_rows: int) -> None:
        if n_rows > self._len.size:
            grown = np.zeros(max(n_rows, 2 * self._len.size), np.float32)
            grown[: self._len.size] = self._len
            self._len = grown

    def _renorm(self) -> None:
        avg = max(self._total_len / max(self.n_live, 1), 1e-9)
        self._norm = (K1 * (1.0 - B + B * self._len / np.float32(avg))).astype(np.float32)
        self._impact = ImpactCache()

    def _add(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        rows = np.asarray(rows, np.int64)
        parsed = _parse(rows, texts)
        lengths = self._len.copy()
        lengths[rows] = parsed.doc_len
        new = Segment.from_postings(parsed.keys, parsed.rows, parsed.tf, lengths)
        # vocabulary: insert the keys not seen before, then count the new documents
        pos, found = _find(self._keys, new.keys)
        fresh = new.keys[~found]
        if fresh.size:
            at = np.searchsorted(self._keys, fresh)
            keys = np.insert(self._keys, at, fresh)
            df = np.insert(self._df, at, 0)
        else:
            keys, df = self._keys, self._df.copy()
        df[np.searchsorted(keys, new.keys)] += np.diff(new.offsets).astype(np.int32)
        if self._base.n_postings == 0 and self._delta.n_postings == 0:
            base, delta = new, Segment.empty()
        else:
            base, delta = self._base, merge(self._delta, new, lengths)
            if delta.n_postings > max(DELTA_FRACTION * base.n_postings, DELTA_MIN):
                base, delta = merge(base, delta, lengths), Segment.empty()
        if delta.n_postings == 0 and np.array_equal(keys, base.keys):
            keys = base.keys  # one array for both
        self._len = lengths
        self._base, self._delta, self._keys, self._df = base, delta, keys, df
        self._total_len += float(parsed.doc_len.sum())
        self.n_live += int(rows.size)
        self.n_rows = max(self.n_rows, int(rows.max()) + 1) if rows.size else self.n_rows
        self._renorm()

    def add(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        """Index new catalogue rows (`rows` ascending, beyond every indexed row) with their texts."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return
        self._extend_len(int(rows.max()) + 1)
        self._add(rows, texts)

    def remove(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        """Take live rows out of the statistics (their postings stay, masked by the caller's `ok` rows)."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return
        keys = np.concatenate([token_hashes(sorted(set(tokens(t)))) for t in texts] or [np.zeros(0, np.uint64)])
        pos, found = _find(self._keys, keys)
        df = self._df.copy()
        np.subtract.at(df, pos[found], 1)
        self._df = np.maximum(df, 0)
        self._total_len -= float(self._len[rows].sum())
        self.n_live -= int(rows.size)
        self._renorm()

    def _lookup(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys, vocabulary positions and live document frequencies of `words` (df 0: never indexed, or no
        live item has it)."""
        keys = token_hashes(words)
        if not words or self._keys.size == 0:
            return keys, np.zeros(len(words), np.int64), np.zeros(len(words), np.int64)
        pos, found = _find(self._keys, keys)
        return keys, pos, np.where(found, self._df[pos], 0)

    def _terms(self, query_tokens: Sequence[str]) -> tuple[dict[str, float], dict[str, tuple[int, int, int]],
                                                          list[list[tuple[str, float]]]]:
        """`expand`, for every expanded word with live items its (key, vocabulary position, df), and per query
        token the (word, weight) pairs it can match in the catalogue (the token itself, or its neighbours one
        edit away at `FUZZY_WEIGHT`; empty when it matches nothing)."""
        weights: dict[str, float] = {}
        known: dict[str, tuple[int, int, int]] = {}
        groups: list[list[tuple[str, float]]] = []
        keys, pos, df = self._lookup(query_tokens)
        fuzzy = 0
        for tok, k, p, d in zip(query_tokens, keys.tolist(), pos.tolist(), df.tolist()):
            if d > 0 or not FUZZY_MIN_LEN <= len(tok) <= FUZZY_MAX_LEN or fuzzy >= FUZZY_MAX_WORDS:
                weights[tok] = weights.get(tok, 0.0) + 1.0
                if d > 0:
                    known[tok] = (k, p, d)
                    groups.append([(tok, 1.0)])
                continue
            fuzzy += 1
            near = list(edits1(tok))
            nkeys, npos, ndf = self._lookup(near)
            group: list[tuple[str, float]] = []
            # only the few neighbours found are sorted (a fixed order whatever the set's; sorting all ~70 x
            # len(tok) candidates cost more than looking them up)
            for j in sorted(np.flatnonzero(ndf > 0).tolist(), key=near.__getitem__):
                word = near[j]
                weights[word] = weights.get(word, 0.0) + FUZZY_WEIGHT
                known[word] = (int(nkeys[j]), int(npos[j]), int(ndf[j]))
                group.append((word, FUZZY_WEIGHT))
            if group:
                groups.append(group)
        return weights, known, groups

    def expand(self, query_tokens: Sequence[str]) -> dict[str, float]:
        """Query token -> weight (its count); an unknown token of FUZZY_MIN_LEN..FUZZY_MAX_LEN characters is
        replaced by the known tokens one edit away, each at FUZZY_WEIGHT."""
        return self._terms(list(query_tokens))[0]

    def query(self, text: str) -> LexicalQuery:
        """`text` tokenised, expanded and resolved to posting lists with their BM25 weights."""
        if self.n_live <= 0:
            return LexicalQuery([], self._norm)
        weights, known, groups = self._terms(tokens(text))
        if not known:
            return LexicalQuery([], self._norm)
        words = list(known)
        avg = max(self._total_len / max(self.n_live, 1), 1e-9)
        df = np.asarray([known[w][2] for w in words], np.float64)
        idf = np.log1p((self.n_live - df + 0.5) / (df + 0.5))
        coef = np.asarray([weights[w] for w in words]) * idf
        lists: list[_List] = []
        for seg in (self._base, self._delta):
            if seg.n_postings == 0:
                continue
            if seg.keys is self._keys:  # the vocabulary is this segment's: positions known
                at = np.asarray([known[w][1] for w in words], np.int64)
                found = np.ones(len(words), bool)
            else:
                at, found = seg.find(np.asarray([known[w][0] for w in words], np.uint64))
            mt = seg.max_tf[at].astype(np.float64)
            bound = coef * mt * (K1 + 1.0) / (mt + K1 * (1.0 - B + B * seg.min_len[at] / avg)) * (1.0 + 1e-5)
            lo, hi = seg.offsets[at].tolist(), seg.offsets[at + 1].tolist()
            for j in np.flatnonzero(found).tolist():
                lists.append(_List(seg.rows[lo[j]:hi[j]], seg.tf[lo[j]:hi[j]], float(coef[j]), float(bound[j]),
                                   (id(seg), int(at[j])), j))
        return LexicalQuery(lists, self._norm, groups, dict(zip(words, idf.tolist())), self._impact)

    def scores(self, query: str, n_rows: int) -> np.ndarray:
        """BM25 score of every row (0 where no query token occurs; dead rows are the caller's to mask)."""
        return self.query(query).dense(n_rows)


def _find(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(keys, wanted)
    if keys.size == 0:
        return np.zeros(wanted.size, np.int64), np.zeros(wanted.size, bool)
    clipped = np.minimum(pos, keys.size - 1)
    return clipped, keys[clipped] == wanted


__all__ = ["LexicalIndex", "LexicalQuery", "Segment", "merge", "tokens", "edits1", "token_hashes", "K1", "B",
           "FUZZY_WEIGHT"]
