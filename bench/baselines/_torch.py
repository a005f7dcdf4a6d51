"""Shared plumbing for the torch baselines: import, seeding and early stopping on validation NDCG@10."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from recengine._deps import require

from .base import FitInfo


def torch_module() -> Any:
    """Import torch or raise DependencyError naming the export extra (the torch baselines need it)."""
    return require("torch", "The LightGCN/SASRec/frozen-text baselines")


def seed_everything(seed: int) -> Any:
    """Seed torch and return a torch.Generator for data order (no global numpy state is touched)."""
    torch = torch_module()
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@dataclass
class EarlyStopping:
    """Keeps the best weights seen on validation; stops after `patience` evaluations without a gain.

    Without a validation function the model simply trains for the requested epochs (the refit on
    train+valid uses the epoch count chosen here), so the same loop serves tuning and refitting.
    """

    patience: int
    info: FitInfo
    best_state: dict[str, Any] | None = field(default=None, repr=False)
    bad_evals: int = 0

    def update(self, epoch: int, value: float, module: Any) -> bool:
        """Record the validation value after `epoch`; return True when training should stop."""
        if self.info.best_valid is None or value > self.info.best_valid:
            self.info.best_valid = float(value)
            self.info.best_epoch = epoch
            self.best_state = copy.deepcopy(module.state_dict())
            self.bad_evals = 0
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.patience

    def restore(self, module: Any) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
