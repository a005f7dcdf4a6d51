"""Measure a written bundle the way it serves: each ONNX variant through `recengine.Engine`.

There is no second scoring implementation here: every number comes from `Engine.score_catalogue`, the
serving pipeline (user tower -> exact candidate retrieval -> fusion head) with full score rows, so the
export's `metrics.validation.<variant>` and the bench's `recengine_<variant>` rows measure the code that
answers `recommend`.

As served, a variant ranks the catalogue with the bundle's stored item vectors (the runtime encodes only
items added later and text queries). With `reencode`, every item's text part is re-encoded by the
variant's encoder first (`Engine.reencode_items`): what every item would get had it been added through
that encoder at serving time, the worst case of what quantising the encoder costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recengine.data.schema import Dataset
from recengine.errors import ExportError
from recengine.evaluation import evaluate_engine
from recengine.split import Split


def open_variant(bundle: str | Path, variant: str, threads: int = 1) -> Any:
    """The bundle served on the CPU with `variant` models and exact retrieval (threads 0 = all cores)."""
    from recengine.engine import Engine

    return Engine.open(bundle, device="cpu", threads=threads or None, variant=variant, retrieval="exact")


def check_same_data(engine: Any, dataset: Dataset) -> None:
    """The bundle's item and user rows must be the data set's (else every metric would be nonsense)."""
    if engine.item_ids() != [str(i) for i in dataset.items.ids] or \
            engine.user_ids() != [str(u) for u in dataset.user_ids]:
        raise ExportError(f"{engine.bundle_path}: the bundle was not exported from this data set "
                          "(item/user ids differ)")


def evaluate_bundle(bundle: str | Path, dataset: Dataset, split: Split, variant: str = "fp32",
                    stage: str = "valid", reencode: bool = False, threads: int = 1) -> dict[str, float]:
    """Full-ranking metrics of the bundle's `variant` on `stage` of `split`, as served (see the module
    docstring). `dataset` must be the data the bundle was exported from."""
    engine = open_variant(bundle, variant, threads)
    check_same_data(engine, dataset)
    if reencode:
        engine.reencode_items()
    held = split.valid if stage == "valid" else split.test
    scenes = engine.encode_scenes(held.context, len(held))
    return evaluate_engine(engine, split, stage, scenes)


__all__ = ["evaluate_bundle", "open_variant", "check_same_data"]
