"""Constants of the bundle format (documented in docs/bundle.md).

A bundle is a directory with `manifest.json` at its root. The manifest lists every other file with its
sha256 and size under `files`; readers verify them and refuse anything not listed.
"""

from __future__ import annotations

FORMAT_NAME = "recengine-bundle"
FORMAT_VERSION = "1.0"
"""major.minor: readers refuse another major version; a minor bump only adds optional fields."""
MANIFEST_NAME = "manifest.json"

REQUIRED_KEYS = ("format", "format_version", "recengine_version", "created_at", "files")


def major(version: str) -> int:
    """The major part of a "major.minor" version string (ValueError if malformed)."""
    return int(str(version).split(".")[0])
