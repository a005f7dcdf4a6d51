"""Optional-dependency imports that fail with a message naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DependencyError

_INSTALL_HINT = {
    "onnxruntime": "pip install 'recengine[cpu]' (or 'recengine[gpu]' for onnxruntime-gpu; never both)",
    "matplotlib": "pip install 'recengine[bench]'",
    "implicit": "pip install 'recengine[bench]'",
    "scipy": "pip install 'recengine[export]' (or 'recengine[bench]')",
    "threadpoolctl": "pip install 'recengine[export]' (or 'recengine[bench]')",
}
_DEFAULT_HINT = "pip install 'recengine[export]'"


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise `DependencyError` saying which `recengine[...]` extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _INSTALL_HINT.get(top, _DEFAULT_HINT)
        raise DependencyError(
            f"{purpose} needs the Python package '{top}', which is not installed: {hint} ({exc})"
        ) from exc
