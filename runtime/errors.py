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


__all__ = [
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
