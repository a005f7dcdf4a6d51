"""The bundle: the only contract between the export stage and the runtime (see docs/bundle.md)."""

from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME
from .io import BundleReader, BundleWriter, bundle_path, open_bundle, safe_relpath, sha256_file

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BundleReader",
    "BundleWriter",
    "bundle_path",
    "open_bundle",
    "safe_relpath",
    "sha256_file",
]
