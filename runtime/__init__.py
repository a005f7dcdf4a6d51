"""recengine: recommendations with a language-model text encoder in the loop, served in-process.

`import recengine` is the lean runtime: numpy, hnswlib, tokenizers and ONNX Runtime, never torch or
transformers. The engine is imported lazily so that `import recengine` works (and says which extra to
install) even where onnxruntime is missing::

    import recengine
    engine = recengine.Engine.open("demo")
    engine.recommend(user_id="1", k=10)

Training and export live in `recengine.export` (extra `export`), benchmarks in `recengine.bench`
(extra `bench`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    BundleError,
    DataError,
    DependencyError,
    DeviceError,
    ExportError,
    NotFoundError,
    ParityError,
    RecengineError,
    RequestError,
)

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .requests import Recommendation, Recommendations, RecommendRequest, RowQuery, UpdateResult

_LAZY = {"Engine": "engine", "Recommendation": "requests", "Recommendations": "requests",
         "RecommendRequest": "requests", "RowQuery": "requests", "UpdateResult": "requests"}


def __getattr__(name: str) -> Any:
    """Import the engine on first use, so a missing onnxruntime gives a clear DependencyError there."""
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'recengine' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Engine",
    "Recommendation",
    "Recommendations",
    "RecommendRequest",
    "RowQuery",
    "UpdateResult",
    "RecengineError",
    "DataError",
    "BundleError",
    "RequestError",
    "NotFoundError",
    "DependencyError",
    "DeviceError",
    "ExportError",
    "ParityError",
]
