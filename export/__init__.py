"""Export stage (extra `export`): train the models on a data set and write a bundle for the runtime.

Public API (imported lazily, so `import recengine.export` and the CLI stay free of torch until used):
- `ExportConfig` (`.from_profile("quick"|"standard")`, `.from_toml(path)`, `.override({"user.epochs": 50})`)
- `run_export(data, out, config=None, force=False) -> Path`
- `fit(dataset, split, config) -> FittedRecengine` (`.score_fn(stage)`, `.evaluate(stage)`, `.user_vectors`,
  `.item_arrays()`): train on any split, score in torch fp32 (the bench's `recengine` model)
- `evaluate_bundle(bundle, dataset, split, variant, stage) -> metrics`: a written bundle's fp32/int8/fp16
  pipeline on a split, through `recengine.Engine` (the code that serves it)
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ExportConfig": ("config", "ExportConfig"),
    "run_export": ("pipeline", "run_export"),
    "fit": ("fit", "fit"),
    "FittedRecengine": ("fit", "FittedRecengine"),
    "evaluate_bundle": ("validation", "evaluate_bundle"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
