"""The manifest's schema, checked once when a bundle is opened (plain Python, no dependency).

Why: every part of the runtime reads manifest fields with `int(dims["item"])`, `spec["path"]`, ... A
hand-edited or hostile manifest (`dims.item` = "abc", `ef_search` = -5, `M` = "x", `pop_bucket_edges` as
strings, a 100k-deep nested object) used to surface as a raw `ValueError`/`KeyError`/`RecursionError`
deep inside loading, or as a traceback from the CLI. Checking the types and ranges of every field the
runtime uses, here, turns each of those into a `BundleError` that names the field.

The rules: a section or field that is present must have the documented type and range (unknown keys are
allowed: a minor format bump only adds optional fields, docs/bundle.md). Whether a field is *required*
depends on the caller (`recengine info` shows partial manifests), so the parsed manifest is made of
`Section` dicts whose missing keys raise `MissingKey` - a `BundleError` (and a `KeyError`, for code that
already catches one) that names the full path, e.g. "manifest lacks dims.item".

`array_spec` gives the dtype kind and shape every known `.npy` array must have according to the
manifest, so readers can check an array's header before loading it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BundleError

MAX_DEPTH = 64
"""Deepest nesting a manifest may have (real ones reach ~6): refuses 100k-deep JSON before recursing."""
MAX_M = 10_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MissingKey(BundleError, KeyError):
    """A required manifest field is absent (a `KeyError` too, so existing `except KeyError` still work)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "manifest lacks a field"


class Section(dict):  # type: ignore[type-arg]
    """A manifest object whose missing keys raise `MissingKey` naming their full path."""

    path: str = ""
    root: str = ""

    def __missing__(self, key: Any) -> Any:
        where = f"{self.path}.{key}" if self.path else str(key)
        prefix = f"{self.root}: " if self.root else ""
        raise MissingKey(f"{prefix}manifest lacks {where}")

    def __deepcopy__(self, memo: dict[int, Any]) -> Section:
        import copy

        out = Section((k, copy.deepcopy(v, memo)) for k, v in self.items())
        out.path, out.root = self.path, self.root
        return out


def sections(node: Any, root: str = "", path: str = "") -> Any:
    """`node` with every dict turned into a `Section` (depth already bounded by `check_depth`)."""
    if isinstance(node, dict):
        out = Section((k, sections(v, root, f"{path}.{k}" if path else str(k))) for k, v in node.items())
        out.path, out.root = path, root
        return out
    if isinstance(node, list):
        return [sections(v, root, path) for v in node]
    return node


_CONTAINERS = (dict, list)
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def check_depth(node: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """BundleError if `node` nests deeper than `limit` (iterative: no recursion on hostile input).

    Only containers can nest. A container's element types are collected in one C-level pass
    (`set(map(type, ...))`); a flat one (the id, text and attribute lists: 100k-1M scalars) is done
    with that, without a Python step per element. `node` is what `json.loads` returns: exact `dict`/`list`."""
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise BundleError(f"{where}: nested deeper than {limit} levels")
        values = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        kinds = set(map(type, values))
        if not kinds.isdisjoint(_CONTAINERS) or not kinds <= _JSON_SCALARS:
            stack.extend((v, depth + 1) for v in values if isinstance(v, _CONTAINERS))


# ------------------------------------------------------------------------------------------- field rules
Rule = Callable[[Any], str | None]
"""A field rule returns None when the value is fine, else what is wrong with it."""


def integer(low: int = 0, high: int | None = None) -> Rule:
    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {v!r}"
        if v < low or (high is not None and v > high):
            return f"must be in {low}..{high if high is not None else 'inf'}, got {v}"
        return None
    return rule


def number(positive: bool = False) -> Rule:
    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"must be a finite number, got {v!r}"
        if positive and v <= 0:
            return f"must be > 0, got {v!r}"
        return None
    return rule


def string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {type(v).__name__}"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def one_of(*allowed: str) -> Rule:
    def rule(v: Any) -> str | None:
        return None if v in allowed else f"must be one of {', '.join(map(repr, allowed))}, got {v!r}"
    return rule


def list_of(item: Rule) -> Rule:
    def rule(v: Any) -> str | None:
        if not isinstance(v, list):
            return f"must be a list, got {type(v).__name__}"
        for i, x in enumerate(v):
            problem = item(x)
            if problem:
                return f"[{i}] {problem}"
        return None
    return rule


def sorted_numbers(v: Any) -> str | None:
    problem = list_of(number())(v)
    if problem:
        return problem
    if any(b < a for a, b in zip(v, v[1:])):
        return "must be sorted ascending"
    return None


def relpath(v: Any) -> str | None:
    from .io import safe_relpath

    if not isinstance(v, str):
        return f"must be a bundle-relative path string, got {type(v).__name__}"
    try:
        safe_relpath(v)
    except BundleError as exc:
        return str(exc)
    return None


def shape_axes(v: Any) -> str | None:
    return list_of(lambda a: None if (isinstance(a, str) or (isinstance(a, int) and not isinstance(a, bool)
                                                              and a >= 0)) else f"bad axis {a!r}")(v)


def check_fields(node: Any, where: str, rules: Mapping[str, Rule], required: tuple[str, ...] = ()) -> None:
    """`node` must be an object; each present key in `rules` must pass its rule; `required` keys exist."""
    if not isinstance(node, dict):
        raise BundleError(f"manifest {where} must be an object, got {type(node).__name__}")
    for key in required:
        if key not in node:
            raise BundleError(f"manifest lacks {where}.{key}")
    for key, rule in rules.items():
        if key in node:
            problem = rule(node[key])
            if problem:
                raise BundleError(f"manifest {where}.{key} {problem}")


# ------------------------------------------------------------------------------------------- sections
DIMS = {"text": integer(1), "item": integer(1), "scene_slots": integer(1), "profile_slots": integer(1),
        "item_feats": integer(0), "max_history": integer(1)}
DATA = {"name": string, "fingerprint": string, "n_items": integer(0), "n_users": integer(0),
        "n_interactions": integer(0), "text_columns": list_of(string), "item_attr_columns": list_of(string),
        "context_columns": list_of(string), "user_attr_columns": list_of(string), "warnings": list_of(string)}
TOKENIZER = {"path": relpath, "max_length": integer(2, 1_000_000), "lowercase": boolean, "pad_id": integer(0)}
INDEX = {"path": relpath, "library": one_of("hnswlib"), "space": one_of("ip"), "dim": integer(1),
         "M": integer(2, MAX_M), "ef_construction": integer(1), "ef_search": integer(1), "count": integer(0),
         "transform": one_of("mips_augment"), "max_norm": number(positive=True)}
TENSOR = {"name": string, "dtype": string, "shape": shape_axes}
VARIANT = {"path": relpath, "bytes": integer(0)}
MODEL = {"item_feature_names": list_of(string), "n_candidates": integer(1), "use_by_default": boolean,
         "max_history": integer(1)}


def _files(manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleError("manifest 'files' must map paths to checksums")
    for rel, meta in files.items():
        where = f"files[{rel!r}]"
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not _SHA256.match(meta["sha256"]):
            raise BundleError(f"manifest {where} lacks a sha256 checksum (64 lowercase hex digits)")
        if "bytes" in meta:
            problem = integer(0)(meta["bytes"])
            if problem:
                raise BundleError(f"manifest {where}.bytes {problem}")


def _models(models: Any) -> None:
    check_fields(models, "models", {})
    for name, spec in models.items():
        where = f"models.{name}"
        check_fields(spec, where, MODEL)
        for io in ("inputs", "outputs"):
            if io in spec:
                problem = list_of(lambda t: None if isinstance(t, dict) else "must be an object")(spec[io])
                if problem:
                    raise BundleError(f"manifest {where}.{io}{problem}")
                for i, tensor in enumerate(spec[io]):
                    check_fields(tensor, f"{where}.{io}[{i}]", TENSOR)
        if "variants" in spec:
            check_fields(spec["variants"], f"{where}.variants", {})
            for variant, entry in spec["variants"].items():
                if isinstance(entry, str):  # the short form `{"fp32": "models/x.onnx"}`
                    problem = relpath(entry)
                    if problem:
                        raise BundleError(f"manifest {where}.variants.{variant} {problem}")
                    continue
                check_fields(entry, f"{where}.variants.{variant}", VARIANT)


def _vocab(vocab: Any) -> None:
    check_fields(vocab, "vocab", {"pop_bucket_edges": sorted_numbers})
    for name in ("scene", "profile"):
        if name not in vocab or vocab[name] is None:
            continue
        where = f"vocab.{name}"
        node = vocab[name]
        check_fields(node, where, {"columns": list_of(string)})
        for key, rule in (("values", list_of(string)), ("numeric_edges", sorted_numbers)):
            if key in node:
                check_fields(node[key], f"{where}.{key}", {})  # an object first, then each entry
                check_fields(node[key], f"{where}.{key}", dict.fromkeys(node[key], rule))


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Check every known section that is present (see the module docstring); BundleError on the first
    problem. `manifest` is the parsed JSON object (depth already bounded)."""
    for key in ("format", "format_version", "recengine_version", "created_at"):
        if key in manifest and not isinstance(manifest[key], str):
            raise BundleError(f"manifest {key} must be a string, got {manifest[key]!r}")
    _files(manifest)
    files = manifest["files"]
    if "data" in manifest:
        check_fields(manifest["data"], "data", DATA)
    if "dims" in manifest:
        check_fields(manifest["dims"], "dims", DIMS, required=("text", "item"))
    if "tokenizer" in manifest:
        check_fields(manifest["tokenizer"], "tokenizer", TOKENIZER)
    if "models" in manifest:
        _models(manifest["models"])
    if "vocab" in manifest:
        _vocab(manifest["vocab"])
    for section in ("items", "users"):
        if section in manifest:
            node = manifest[section]
            if not isinstance(node, dict):
                raise BundleError(f"manifest {section} must be an object, got {type(node).__name__}")
            if section == "items" and "cold_item_feats" in node:
                problem = list_of(number())(node["cold_item_feats"])
                if problem:
                    raise BundleError(f"manifest items.cold_item_feats {problem}")
            for key, rel in node.items():
                if key == "cold_item_feats":
                    continue
                problem = relpath(rel)
                if problem:
                    raise BundleError(f"manifest {section}.{key} {problem}")
                if rel not in files:
                    raise BundleError(f"manifest {section}.{key} names {rel}, which is not listed in 'files'")
                _held_by_index(manifest, section, key, rel)
    if "index" in manifest:
        _index(manifest)


def _held_by_index(manifest: dict[str, Any], section: str, key: str, rel: str) -> None:
    """Format 2: an item array may live in the index built over it (`format.index_holding`); any other
    array naming an index file (e.g. `items.vectors` -> the text index) is refused."""
    from .format import INDEX_SOURCE

    index = manifest.get("index")
    if not isinstance(index, dict):
        return
    for space, node in index.items():
        if isinstance(node, dict) and node.get("path") == rel and not (
                section == "items" and INDEX_SOURCE.get(space) == key):
            raise BundleError(f"manifest {section}.{key} names {rel}, the file of index.{space} (only "
                              f"items.{INDEX_SOURCE.get(space, '?')} may be read from that index)")


def _index(manifest: dict[str, Any]) -> None:
    index = manifest["index"]
    check_fields(index, "index", {})
    dims = manifest.get("dims") if isinstance(manifest.get("dims"), dict) else {}
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    for name, spec in index.items():
        where = f"index.{name}"
        check_fields(spec, where, INDEX)
        if ("transform" in spec) != ("max_norm" in spec):
            raise BundleError(f"manifest {where}: transform and max_norm go together")
        if "path" in spec and spec["path"] not in manifest["files"]:
            raise BundleError(f"manifest {where}.path names {spec['path']}, which is not listed in 'files'")
        width = dims.get({"item": "item", "text": "text"}.get(name, ""))
        if "dim" in spec and isinstance(width, int):
            expected = width + (1 if "transform" in spec else 0)
            if spec["dim"] != expected:
                raise BundleError(f"manifest {where}.dim is {spec['dim']}, dims.{name} says {expected}"
                                  + (" (+1 for mips_augment)" if "transform" in spec else ""))
        n_items = data.get("n_items")
        if "count" in spec and isinstance(n_items, int) and spec["count"] != n_items:
            raise BundleError(f"manifest {where}.count is {spec['count']}, data.n_items {n_items}")


# ------------------------------------------------------------------------------------------- arrays
def array_spec(manifest: Mapping[str, Any], rel: str) -> tuple[str, tuple[int | None, ...] | None] | None:
    """(dtype kinds, shape) the manifest implies for the array at `rel`, None for an unknown file.

    Kinds are numpy `dtype.kind` letters ("f" float, "iu" integer); a None axis is not fixed by the
    manifest. A None shape allows any rank (1-D or 2-D `users/profile.npy`)."""
    dims = manifest.get("dims") if isinstance(manifest.get("dims"), dict) else {}
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    n_items, n_users = data.get("n_items"), data.get("n_users")
    n1 = None if n_users is None else n_users + 1
    items: dict[str, tuple[str, tuple[int | None, ...] | None]] = {
        "vectors": ("f", (n_items, dims.get("item"))),
        "text_vectors": ("f", (n_items, dims.get("item"))),
        "text_embeddings": ("f", (n_items, dims.get("text"))),
        "popularity": ("iu", (n_items,)),
        "pop_bucket": ("iu", (n_items,)),
        "item_feats": ("f", (n_items, dims.get("item_feats"))),
    }
    users: dict[str, tuple[str, tuple[int | None, ...] | None]] = {
        "vectors": ("f", (n_users, dims.get("item"))),
        "profile": ("iu", None),
        "history_indptr": ("iu", (n1,)),
        "history_items": ("iu", (None,)),
    }
    for section, table in (("items", items), ("users", users)):
        node = manifest.get(section)
        if isinstance(node, dict):
            for key, expected in table.items():
                if node.get(key) == rel:
                    return expected
    return None


def code_bounds(manifest: Mapping[str, Any], rel: str) -> list[int] | None:
    """Exclusive upper bounds of the integer codes in `rel` (one per column, or one for a 1-D array),
    for the arrays whose codes index an embedding table of the models: `items/pop_bucket.npy`
    (0..len(vocab.pop_bucket_edges)+1) and `users/profile.npy` (per column: the size of its
    `vocab.profile` values, or len(numeric_edges)+2; a single 0 slot without columns). An out-of-range code
    made every request that touched it fail inside ONNX Runtime (or, negative, silently index from the end).
    None when the manifest does not say (the lower bound 0 still applies to every code array)."""
    items = manifest.get("items") if isinstance(manifest.get("items"), dict) else {}
    users = manifest.get("users") if isinstance(manifest.get("users"), dict) else {}
    vocab = manifest.get("vocab") if isinstance(manifest.get("vocab"), dict) else {}
    if rel == items.get("pop_bucket") and isinstance(vocab.get("pop_bucket_edges"), list):
        return [len(vocab["pop_bucket_edges"]) + 2]
    if rel == users.get("profile") and isinstance(vocab.get("profile"), dict):
        node = vocab["profile"]
        columns = node.get("columns") or []
        if not columns:
            return [1]
        values, edges = node.get("values") or {}, node.get("numeric_edges") or {}
        bounds = []
        for column in columns:
            if column in values:
                bounds.append(len(values[column]))
            elif column in edges:
                bounds.append(len(edges[column]) + 2)
            else:
                return None
        return bounds
    return None


CODE_ARRAYS = ("popularity", "pop_bucket", "history_indptr", "history_items", "profile")
"""Integer arrays whose values are counts, offsets, rows or codes: never negative."""


def is_code_array(manifest: Mapping[str, Any], rel: str) -> bool:
    for section in ("items", "users"):
        node = manifest.get(section)
        if isinstance(node, dict) and any(node.get(key) == rel for key in CODE_ARRAYS):
            return True
    return False


# ------------------------------------------------------------------------------------------- JSON files
def _only(values: list[Any], kinds: frozenset[type]) -> bool:
    """Every element's exact type is in `kinds` (one C-level pass; JSON gives exact types, no subclasses)."""
    return set(map(type, values)) <= kinds


_STR = frozenset({str})


def check_json_file(manifest: Mapping[str, Any], rel: str, value: Any) -> None:
    """The content of a known JSON file (item/user ids, item texts, item attributes) has the documented
    shape: a list of strings with one entry per item or user, attributes `{name: [scalar per item]}`.
    Unknown files are not checked. BundleError naming the file otherwise."""
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    items = manifest.get("items") if isinstance(manifest.get("items"), dict) else {}
    users = manifest.get("users") if isinstance(manifest.get("users"), dict) else {}
    n_items, n_users = data.get("n_items"), data.get("n_users")

    def strings(count: int | None) -> None:
        if not isinstance(value, list) or not _only(value, _STR):
            raise BundleError(f"{rel} must be a list of strings")
        if count is not None and len(value) != count:
            raise BundleError(f"{rel} has {len(value)} entries, the manifest's data says {count}")

    if rel in (items.get("ids"), items.get("texts")):
        strings(n_items)
    elif rel == users.get("ids"):
        strings(n_users)
    elif rel == items.get("attrs"):
        if not isinstance(value, dict):
            raise BundleError(f"{rel} must map attribute names to lists of values")
        for name, values in value.items():
            if not isinstance(values, list) or not _only(values, _JSON_SCALARS):
                raise BundleError(f"{rel}: {name} must be a list of strings, numbers, booleans or null")
            if n_items is not None and len(values) != n_items:
                raise BundleError(f"{rel}: {name} has {len(values)} values, the manifest's data says {n_items}")


__all__ = ["MissingKey", "Section", "sections", "check_depth", "validate_manifest", "array_spec",
           "check_json_file", "code_bounds", "is_code_array", "MAX_DEPTH"]
