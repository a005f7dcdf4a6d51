"""Weighted matrix factorisation by alternating least squares (implicit's ALS, Hu et al. 2008)."""

from __future__ import annotations

from typing import Any

from ._implicit import ImplicitMF


class ALS(ImplicitMF):
    """Factor model on binary confidences scaled by `alpha`; score = user_factor · item_factor."""

    name = "als"
    module, model_class = "als", "AlternatingLeastSquares"
    defaults = {"factors": 64, "regularization": 0.05, "alpha": 1.0}
    num_threads = 0

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"factors": 16, "regularization": 0.05, "alpha": 1.0, "iterations": 10, "eval_every": 5}]
        # iterations: early-stopped in chunks of 5 (at most 50); ~1-6 s per setting on MovieLens-small
        return [
            {"factors": f, "regularization": r, "alpha": a, "iterations": 50, "eval_every": 5, "patience": 2}
            for f in (64, 128, 256)
            for r in (0.01, 0.1, 1.0)
            for a in (1.0, 5.0, 20.0)
        ]
