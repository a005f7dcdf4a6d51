"""Measure a written bundle the way it serves: each ONNX variant through `recengine.Engine`.

There is no second scoring implementation here: every number comes from `Engine.score_catalogue`, the
serving pipeline (user tower -> exact candidate retrieval -> fusion head) with full score rows, so the
export's `metrics.validation.<variant>` and the bench's `recengine_<variant>` rows measure the code that
answers `recommend`.

As served, a variant ranks the catalogue with the bundle's stored item vectors (the runtime encodes only
items added later and text queries). With `reencode`, every item's text part is re-encoded by the
variant's encoder first (`Engine.reencode_items`): what every item would get had it been added through
that encoder at serving time, the worst case of what quantising the encoder costs.

Like every evaluation of the export, it scores at most `eval_sample.EVAL_USERS` users of the stage (a seeded
sample, the same users `fit` early-stopped on; every user when there are fewer): a full-ranking pass costs
users x items, which made the export's cost grow with the data squared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recengine.data.schema import Dataset
from recengine.errors import ExportError
from recengine.evaluation import csr_rows, engine_row_scorer, evaluate_queries, histories, make_queries
from recengine.split import Split

from .eval_sample import EVAL_USERS, sample_queries


def open_variant(bundle: str | Path, variant: str, threads: int = 1, item_variant: str | None = None) -> Any:
    """The bundle served on the CPU with `variant` models and exact retrieval (threads 0 = all cores). A model
    whose `variant` the export dropped for failing parity runs fp32, as for any host asking for the variant
    (`recengine.models.pick_variant`). `item_variant`: the encoder that re-encodes items (None: the engine's
    default, fp32 beside an INT8 encoder)."""
    from recengine.engine import Engine

    return Engine.open(bundle, device="cpu", threads=threads or None, variant=variant, retrieval="exact",
                       item_variant=item_variant)


def check_same_data(engine: Any, dataset: Dataset) -> None:
    """The bundle's item and user rows must be the data set's (else every metric would be nonsense)."""
    if engine.item_ids() != [str(i) for i in dataset.items.ids] or \
            engine.user_ids() != [str(u) for u in dataset.user_ids]:
        raise ExportError(f"{engine.bundle_path}: the bundle was not exported from this data set "
                          "(item/user ids differ)")


def evaluate_bundle(bundle: str | Path, dataset: Dataset, split: Split, variant: str = "fp32",
                    stage: str = "valid", reencode: bool = False, threads: int = 1,
                    max_users: int = EVAL_USERS) -> dict[str, float]:
    """Full-ranking metrics of the bundle's `variant` on `stage` of `split`, as served (see the module
    docstring), over at most `max_users` of the stage's users (0 = all). `dataset` must be the data the bundle
    was exported from."""
    # re-encoding through the variant's own encoder (not the engine's fp32 item encoder): the check is of
    # that encoder, which serves search queries and items added with `item_variant=variant`
    engine = open_variant(bundle, variant, threads, item_variant=variant if reencode else None)
    check_same_data(engine, dataset)
    if reencode:
        engine.reencode_items()
    held = split.valid if stage == "valid" else split.test
    scenes = engine.encode_scenes(held.context, len(held))
    return evaluate_engine_sample(engine, split, stage, scenes, max_users)


def evaluate_engine_sample(engine: Any, split: Split, stage: str, scene_codes: Any,
                           max_users: int = EVAL_USERS) -> dict[str, float]:
    """`recengine.evaluation.evaluate_engine` over `sample_queries(make_queries(split, stage), max_users)`:
    the same scorer (`engine_row_scorer` -> `Engine.score_catalogue`) and metrics, on the sampled users."""
    q = sample_queries(make_queries(split, stage), max_users)
    indptr, indices = histories(split, stage)
    scene = (np.zeros((len(q.users), engine.scene_slots), np.int64) if scene_codes is None
             else np.asarray(scene_codes, dtype=np.int64)[q.scene_rows])
    scorer = engine_row_scorer(engine, csr_rows(indptr, indices, q.users), scene, engine.user_profiles(q.users),
                               [q.excluded(i) for i in range(len(q.users))])
    return evaluate_queries(scorer, q).metrics


__all__ = ["evaluate_bundle", "evaluate_engine_sample", "open_variant", "check_same_data"]
