"""The one contract every quality-bench model follows (baselines and the recengine adapter alike).

Shaped like implicit's `RecommenderBase`, but built for the full-ranking protocol: `fit` sees one
`TrainData` (user histories as a chronological CSR) and `score(users)` returns a dense score row over the
whole catalogue for each user, which is exactly what `recengine.metrics.evaluate_full_ranking` consumes.
One contract means the harness, the tuning grid and the contract tests treat every model the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from recengine.data.schema import Interactions
from recengine.errors import RecengineError
from recengine.split import chronological_order, to_csr


class BaselineSkipped(RecengineError):
    """A baseline cannot run on this data with this machine's means (the message says why, with numbers):
    the bench omits it with a note instead of being killed by the kernel halfway through the run."""


MEMORY_SHARE = 0.7
"""Of the memory available when a baseline starts, what its largest structure may take (the rest: the bench,
the data, the OS)."""


def require_memory(need: int, what: str, available: int | None = None) -> None:
    """BaselineSkipped naming `what` and both sizes when `need` bytes exceed `MEMORY_SHARE` of the memory
    available (`available`, default: the kernel's MemAvailable); nothing when that is unknown."""
    from ..machine import available_memory_bytes

    avail = available_memory_bytes() if available is None else available
    if avail is not None and need > MEMORY_SHARE * avail:
        raise BaselineSkipped(f"{what} needs ~{need / 2**30:.1f} GiB; {avail / 2**30:.1f} GiB is available")


ValidateFn = Callable[[Callable[[np.ndarray], np.ndarray]], float]
"""Given a score function (users -> [b, n_items]), return the validation NDCG@10 (for early stopping)."""


@dataclass(frozen=True)
class TrainData:
    """What a model may learn from: per-user chronological item histories, plus item text.

    Scoring uses the same histories: a model fitted on train+valid scores a test query from the user's
    train+valid history, so every model sees exactly the same events at test time.
    """

    n_users: int
    n_items: int
    indptr: np.ndarray
    """int64 [n_users + 1] CSR offsets."""
    indices: np.ndarray
    """int64 item rows, chronological within each user."""
    item_texts: list[str] = field(default_factory=list)
    seed: int = 0

    @classmethod
    def from_interactions(
        cls, inter: Interactions, n_users: int, n_items: int, item_texts: list[str] | None = None, seed: int = 0
    ) -> TrainData:
        """Histories from (possibly concatenated) interactions, ordered by (user, time)."""
        ordered = inter.subset(chronological_order(inter, seed))
        indptr, indices = to_csr(ordered.user, ordered.item, n_users)
        return cls(n_users, n_items, indptr, indices, list(item_texts or []), seed)

    def history(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]: self.indptr[user + 1]]

    def n_interactions(self) -> int:
        return int(self.indices.shape[0])

    def user_item_matrix(self) -> Any:
        """Binary scipy CSR [n_users, n_items] (float32); duplicates collapse to 1."""
        from recengine._deps import require

        sparse = require("scipy.sparse", "The ItemKNN/ALS/BPR baselines")
        rows = np.repeat(np.arange(self.n_users), np.diff(self.indptr))
        mat = sparse.csr_matrix(
            (np.ones(len(self.indices), np.float32), (rows, self.indices)), shape=(self.n_users, self.n_items)
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.indices, minlength=self.n_items).astype(np.int64)


@dataclass
class FitInfo:
    """What a fit learned about itself: the epoch early stopping kept and the validation score there."""

    best_epoch: int | None = None
    best_valid: float | None = None
    epochs_run: int = 0


class Recommender(ABC):
    """A model under test. Subclasses declare `name` and a small tuning `grid` per profile."""

    name: ClassVar[str] = ""
    needs_text: ClassVar[bool] = False
    """True when the model reads item text (it can then score items nobody interacted with)."""
    reads_history: ClassVar[bool] = False
    """True when scoring reads the user's history as input (a sequence model): the test then swaps in the
    train+valid history (`use_history`) instead of refitting, as the SASRec protocol does."""

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.info = FitInfo()

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        """Hyper-parameter settings tried on the validation split (first = default)."""
        return [{}]

    @abstractmethod
    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> Recommender:
        """Learn from `data`. Epoch-based models early-stop on `validate` when given, else run
        `params["epochs"]` epochs (the refit on train+valid uses the epoch count found on validation)."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """float32 [len(users), n_items]: higher = more recommended (known items are masked by the harness)."""

    def use_history(self, data: TrainData) -> None:
        """Score from `data`'s histories without refitting (only models with `reads_history`)."""
        raise TypeError(f"{self.name} cannot swap histories; refit it instead")

    def refit_params(self) -> dict[str, Any]:
        """Parameters for the final fit on more data: the tuned ones, with the early-stopped epoch count."""
        params = dict(self.params)
        if self.info.best_epoch is not None:
            params["epochs"] = self.info.best_epoch
        return params
