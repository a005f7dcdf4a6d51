"""Bayesian personalised ranking matrix factorisation (implicit's BPR, Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any

from ._implicit import ImplicitMF


class BPR(ImplicitMF):
    """Pairwise-ranking factor model; implicit appends an item-bias column (user side is 1)."""

    name = "bpr"
    module, model_class = "bpr", "BayesianPersonalizedRanking"
    defaults = {"factors": 64, "learning_rate": 0.01, "regularization": 0.01}
    num_threads = 1  # multi-threaded BPR is Hogwild SGD: not reproducible under a seed

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"factors": 16, "learning_rate": 0.05, "regularization": 0.01, "iterations": 30,
                     "eval_every": 10}]
        # iterations: early-stopped in chunks of 25 (at most 400)
        return [
            {"factors": f, "learning_rate": lr, "regularization": r, "iterations": 400, "eval_every": 25,
             "patience": 2}
            for f in (64, 128, 256)
            for lr in (0.01, 0.05)
            for r in (0.001, 0.01)
        ]
