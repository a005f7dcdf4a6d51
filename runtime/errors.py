"""The error hierarchy every part of recengine raises.

Callers (the CLI, host applications) catch `RecengineError` to tell a user's mistake from a bug: a
`RecengineError` always carries a message that names the problem and can be shown as is, while any other
exception is a defect in recengine itself.
"""

from __future__ import annotations


class RecengineError(Exception):
    """Root of every error recengine raises on purpose (bad data, bad bundle, bad request, ...)."""


class DataError(RecengineError):
    """The input data set breaks the data contract (missing file or column, bad row, ...)."""


class BundleError(RecengineError):
    """A bundle is missing, corrupted, tampered with, or of an unsupported format version."""


class RequestError(RecengineError, ValueError):
    """A runtime request is malformed (bad k, unknown scene key, empty text, non-string id, ...).

    The engine stays usable after raising it.
    """


class NotFoundError(RequestError, LookupError):
    """The request names an item or user the engine does not know (HTTP hosts map it to 404)."""


class DependencyError(RecengineError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ExportError(RecengineError):
    """The export stage cannot proceed (bad encoder directory, output exists, too little data, ...)."""


class ParityError(ExportError):
    """An exported ONNX model disagrees with its torch original beyond tolerance."""


class DeviceError(RecengineError):
    """The requested execution device is not really available (e.g. CUDA asked for, CPU delivered)."""


SHOWN_CHARS = 80


def shown(value: object) -> str:
    """`value` as an error message shows it: its repr cut to `SHOWN_CHARS` characters. Why: messages echo what
    the caller sent, and a hostile value must not break the message itself (repr of an int past 4,300 digits
    raises ValueError; a 1 MB string would be echoed whole)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any object's __repr__ may fail; the message must not
        text = f"<{type(value).__name__}>"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def as_number(value: object) -> float:
    """float(value), with every way that fails as ValueError (OverflowError for ints past float's range)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(str(exc)) from None


__all__ = [
    "shown",
    "as_number",
    "RecengineError",
    "DataError",
    "BundleError",
    "RequestError",
    "NotFoundError",
    "DependencyError",
    "ExportError",
    "ParityError",
    "DeviceError",
]
