"""A small BM25 index over item text, for exact-word matches in `search` (hybrid with the dense text space).

Why: the fine-tuned encoder's `text_embedding` is pulled towards the interaction graph, so a query that
names an item ("toy story") may not find it first by cosine alone; a lexical score finds the words
themselves. `recengine.neighbours.search` fuses the two rankings.

Structures (no scipy): one posting list per token, `rows` int32 and `tf` float32 numpy arrays (8 bytes per
distinct (item, token) pair), plus per-row document lengths. Rows are catalogue rows; a removed row keeps
its postings (the catalogue never reuses rows) and is masked at query time by the catalogue's `alive`, while
document frequencies and the mean length count live rows only. A compaction builds a new index over the
compacted catalogue (`LexicalIndex.build`).

Tokens: NFKD-folded (accents dropped), lower-cased runs of letters/digits ("Pokémon" -> "pokemon").
Scoring: Okapi BM25, k1=1.2, b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
Typos: a query token of >= 4 characters that no live item contains is matched to the indexed tokens one
edit away (a deletion, insertion, substitution or transposition; the candidates are generated from the
query token and looked up, so this costs no memory), each counted at `FUZZY_WEIGHT` of its BM25 score.
Writers (`add`, `remove`) run under the engine's write lock and replace posting arrays whole, so a reader
under the read lock always sees complete arrays.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
K1 = 1.2
B = 0.75
FUZZY_WEIGHT = 0.7
FUZZY_MIN_LEN = 4
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def tokens(text: str) -> list[str]:
    """Lower-cased, accent-folded word tokens of `text`."""
    if text.isascii():  # nothing to fold (most catalogue texts): 3x faster
        return _WORD.findall(text.lower())
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    return _WORD.findall(folded)


def edits1(word: str) -> set[str]:
    """Every string one deletion, transposition, substitution or insertion (over a-z, 0-9) from `word`."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in _ALPHABET}
    out |= {a + c + b for a, b in splits for c in _ALPHABET}
    out.discard(word)
    return out


class LexicalIndex:
    """BM25 over the catalogue's item texts (rows = catalogue rows)."""

    def __init__(self) -> None:
        self._rows: dict[str, np.ndarray] = {}
        self._tf: dict[str, np.ndarray] = {}
        self._df: dict[str, int] = {}
        self._len = np.zeros(0, np.float32)
        self.n_live = 0
        self._total_len = 0.0
        self._version = 0
        """Bumped by every write: the cached per-posting BM25 weights (`_impact`) of older versions are stale."""
        self._impact: dict[str, tuple[int, np.ndarray]] = {}

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
        return len(self._rows)

    @property
    def n_postings(self) -> int:
        return int(sum(a.size for a in self._rows.values()))

    def nbytes(self) -> int:
        """Bytes held by the numpy arrays (postings and lengths; dict/str overhead not counted)."""
        return int(sum(a.nbytes for a in self._rows.values()) + sum(a.nbytes for a in self._tf.values())
                   + self._len.nbytes)

    def _extend_len(self, n_rows: int) -> None:
        if n_rows > self._len.size:
            grown = np.zeros(max(n_rows, 2 * self._len.size), np.float32)
            grown[: self._len.size] = self._len
            self._len = grown

    def _add(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        self._version += 1
        pending: dict[str, tuple[list[int], list[float]]] = {}
        for row, text in zip(rows.tolist(), texts):
            counts = Counter(tokens(text))
            length = float(sum(counts.values()))
            self._len[row] = length
            self._total_len += length
            self.n_live += 1
            for tok, c in counts.items():
                entry = pending.get(tok)
                if entry is None:
                    entry = pending[tok] = ([], [])
                entry[0].append(row)
                entry[1].append(float(c))
                self._df[tok] = self._df.get(tok, 0) + 1
        for tok, (r, f) in pending.items():
            new_rows = np.asarray(r, np.int32)
            new_tf = np.asarray(f, np.float32)
            old = self._rows.get(tok)
            if old is not None:
                new_rows = np.concatenate([old, new_rows])
                new_tf = np.concatenate([self._tf[tok], new_tf])
            self._tf[tok] = new_tf
            self._rows[tok] = new_rows

    def add(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        """Index new catalogue rows (`rows` ascending, beyond every indexed row) with their texts."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return
        self._extend_len(int(rows.max()) + 1)
        self._add(rows, texts)

    def remove(self, rows: np.ndarray, texts: Sequence[str]) -> None:
        """Take live rows out of the statistics (their postings stay, masked by `alive` at query time)."""
        self._version += 1
        for row, text in zip(np.asarray(rows, np.int64).tolist(), texts):
            for tok in set(tokens(text)):
                left = self._df.get(tok, 0) - 1
                if left > 0:
                    self._df[tok] = left
                else:
                    self._df.pop(tok, None)
            self._total_len -= float(self._len[row])
            self.n_live -= 1

    def expand(self, query_tokens: Sequence[str]) -> dict[str, float]:
        """Query token -> weight (its count); an unknown token of >= FUZZY_MIN_LEN characters is replaced by
        the known tokens one edit away, each at FUZZY_WEIGHT."""
        out: dict[str, float] = {}
        for tok in query_tokens:
            if self._df.get(tok, 0) > 0 or len(tok) < FUZZY_MIN_LEN:
                out[tok] = out.get(tok, 0.0) + 1.0
                continue
            for near in edits1(tok):
                if self._df.get(near, 0) > 0:
                    out[near] = out.get(near, 0.0) + FUZZY_WEIGHT
        return out

    def _impacts(self, tok: str, rows: np.ndarray) -> np.ndarray:
        """idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg)) of each posting of `tok`, cached until the
        next write (readers may compute an entry twice; each assignment is whole)."""
        cached = self._impact.get(tok)
        if cached is not None and cached[0] == self._version and cached[1].size == rows.size:
            return cached[1]
        df = self._df.get(tok, 0)
        avg = max(self._total_len / max(self.n_live, 1), 1e-9)
        idf = np.log1p((self.n_live - df + 0.5) / (df + 0.5))
        tf = self._tf[tok]
        norm = K1 * (1.0 - B + B * self._len[rows] / avg)
        impact = (idf * tf * (K1 + 1.0) / (tf + norm)).astype(np.float32)
        self._impact[tok] = (self._version, impact)
        return impact

    def scores(self, query: str, n_rows: int) -> np.ndarray:
        """BM25 score of every row (0 where no query token occurs; dead rows are the caller's to mask)."""
        out = np.zeros(n_rows, np.float32)
        if self.n_live <= 0:
            return out
        for tok, weight in self.expand(tokens(query)).items():
            rows = self._rows.get(tok)
            if rows is None or self._df.get(tok, 0) == 0:
                continue
            impact = self._impacts(tok, rows)
            if rows.size and rows[-1] >= n_rows:  # rows ascend; a caller's older, shorter view
                keep = rows < n_rows
                rows, impact = rows[keep], impact[keep]
            out[rows] += np.float32(weight) * impact
        return out


__all__ = ["LexicalIndex", "tokens", "edits1", "K1", "B", "FUZZY_WEIGHT"]
