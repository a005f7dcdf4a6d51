"""Baselines for `recengine bench quality`, all behind one contract (`base.Recommender`).

`BASELINES` maps the report name to the class; `create(name, params, text)` builds one (the text source
is only passed to models that read item text).
"""

from __future__ import annotations

from typing import Any

from recengine.errors import RequestError

from .als import ALS
from .base import FitInfo, Recommender, TrainData, ValidateFn
from .bpr import BPR
from .ease import EASE
from .frozen_text import FrozenText, TextSource
from .itemknn import ItemKNN
from .lightgcn import LightGCN
from .popularity import Popularity
from .sasrec import SASRec

BASELINES: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, ItemKNN, EASE, ALS, BPR, LightGCN, SASRec, FrozenText)
}


def create(name: str, params: dict[str, Any], text: TextSource | None = None) -> Recommender:
    """Instantiate baseline `name` with `params`; a text-reading model needs `text`."""
    if name not in BASELINES:
        raise RequestError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    cls = BASELINES[name]
    if cls.needs_text:
        if text is None:
            raise RequestError(f"baseline {name!r} needs item text embeddings (a text source)")
        return cls(text, **params)  # type: ignore[call-arg]
    return cls(**params)


__all__ = [
    "ALS", "BASELINES", "BPR", "EASE", "FitInfo", "FrozenText", "ItemKNN", "LightGCN", "Popularity", "Recommender",
    "SASRec", "TextSource", "TrainData", "ValidateFn", "create",
]
