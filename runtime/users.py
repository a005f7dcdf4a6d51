"""Known users: ids, stored user vectors, encoded profiles and chronological histories (item rows).

Histories start as the bundle's CSR arrays; `update_user` keeps the changed users' histories in an
overlay (a dict of arrays) so a live update never rewrites the big CSR arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bundle import BundleReader
from .catalogue import Growable
from .errors import BundleError


class Users:
    """User table with live history updates."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray, profile: np.ndarray, indptr: np.ndarray,
                 items: np.ndarray) -> None:
        n = len(ids)
        self.ids: list[str] = [str(i) for i in ids]
        self.row_of: dict[str, int] = {u: r for r, u in enumerate(self.ids)}
        if len(self.row_of) != n:
            raise BundleError("users/ids.json has duplicate ids")
        if vectors.shape[0] != n or profile.shape[0] != n or indptr.shape[0] != n + 1:
            raise BundleError(
                f"user arrays disagree: {n} ids, {vectors.shape[0]} vectors, {profile.shape[0]} profiles, "
                f"{indptr.shape[0]} history offsets"
            )
        if n and (indptr[0] != 0 or indptr[-1] != items.shape[0] or np.any(np.diff(indptr) < 0)):
            raise BundleError("users/history_indptr.npy is not a valid CSR offset array")
        self._vectors = Growable(vectors.astype(np.float32))
        self._profile = Growable(profile.astype(np.int64))
        self._indptr = indptr.astype(np.int64)
        self._items = items.astype(np.int64)
        self._overlay: dict[int, np.ndarray] = {}

    @classmethod
    def from_bundle(cls, reader: BundleReader) -> Users:
        spec = reader.section("users")
        try:
            ids = reader.load_json(spec["ids"])
            vectors = reader.load_npy(spec["vectors"])
            profile = reader.load_npy(spec["profile"])
            indptr = reader.load_npy(spec["history_indptr"])
            items = reader.load_npy(spec["history_items"])
        except KeyError as exc:
            raise BundleError(f"{reader.root}: manifest users section lacks {exc.args[0]!r}") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BundleError(f"{reader.root}: users/ids.json must be a list of strings")
        if profile.ndim == 1:
            profile = profile.reshape(-1, 1)
        return cls(ids, vectors, profile, indptr, items)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors.view

    @property
    def profiles(self) -> np.ndarray:
        return self._profile.view

    def history(self, row: int) -> np.ndarray:
        """Item rows of a user's history, oldest first."""
        hist = self._overlay.get(row)
        if hist is not None:
            return hist
        if row < self._indptr.shape[0] - 1:
            return self._items[self._indptr[row] : self._indptr[row + 1]]
        return np.zeros(0, dtype=np.int64)

    def set_history(self, row: int, rows: np.ndarray) -> None:
        self._overlay[row] = np.asarray(rows, dtype=np.int64)

    def set_vector(self, row: int, vector: np.ndarray) -> None:
        self._vectors.view[row] = vector

    def add(self, user_id: str, vector: np.ndarray, profile: np.ndarray) -> int:
        row = self.n
        self.ids.append(user_id)
        self.row_of[user_id] = row
        self._vectors.append(vector.reshape(1, -1))
        self._profile.append(profile.reshape(1, -1))
        self._overlay[row] = np.zeros(0, dtype=np.int64)
        return row

    def remapped(self, row_map: np.ndarray) -> Users:
        """The same users with history item rows mapped through `row_map` (-1 entries dropped)."""
        indptr, items = self.csr(row_map)
        return Users(self.ids, self.vectors.copy(), self.profiles.copy(), indptr, items)

    def csr(self, row_map: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, items) of every user's history, items mapped through `row_map` (-1 entries dropped)."""
        lengths, chunks = [], []
        for u in range(self.n):
            h = self.history(u)
            if row_map is not None:
                h = row_map[h]
                h = h[h >= 0]
            chunks.append(h)
            lengths.append(h.size)
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)
        return indptr, items
