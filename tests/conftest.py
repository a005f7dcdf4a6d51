"""Shared pytest fixtures.

Shared file: engineers only ADD fixtures here (keep edits small). The base fixtures give every test the
same small, real MovieLens sample (`tests/fixtures/ml_tiny`, see its `make_ml_tiny.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
ML_TINY_DIR = FIXTURES_DIR / "ml_tiny"


@pytest.fixture(scope="session")
def ml_tiny_dir() -> Path:
    """Directory of the tiny MovieLens sample (ml-latest-small layout: ratings/movies/tags.csv + README.txt).

    Read-only: copy it to `tmp_path` before modifying anything.
    """
    return ML_TINY_DIR


@pytest.fixture(scope="session")
def ml_tiny_dataset(ml_tiny_dir: Path):  # -> recengine.data.Dataset
    """The tiny MovieLens sample loaded once per session (80 users, 400 movies, ~5.2k ratings)."""
    pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")
    from recengine.data import load_dataset

    return load_dataset(ml_tiny_dir)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny seeded-random 2-layer BERT (hidden 32, 2 heads) as a Hugging Face directory: config.json,
    model.safetensors, vocab.txt, tokenizer.json. Built once per session; use it as `--encoder DIR`."""
    pytest.importorskip("torch", reason="the tiny encoder is written with torch (the export extra)")
    from recengine.export.tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, ml_tiny_dir: Path, tiny_encoder_dir: Path) -> Path:
    """A real bundle exported once per session with the quick profile + the tiny encoder on ml_tiny
    (all three models in fp32/int8/fp16, hnswlib indexes, metrics, parity, timings). Read-only: copy it
    to `tmp_path` before modifying anything."""
    pytest.importorskip("torch", reason="tiny_bundle is made by the torch export (the export extra)")
    from recengine.export import ExportConfig, run_export

    config = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True})
    return run_export(ml_tiny_dir, tmp_path_factory.mktemp("tiny_bundle") / "bundle", config)


@pytest.fixture(scope="session")
def lean_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete, valid bundle written without torch (numpy + onnx + tokenizers, see
    tests/fixtures/lean_bundle.py): 160 items (20 never interacted with), 24 users, a WordLevel tokenizer,
    the three models in fp32/int8/fp16, HNSW indexes, a scene and a profile column, no metrics. Built once
    per session in about a second; the runtime tests run on it on a lean install. Read-only: copy it to
    `tmp_path` before modifying anything."""
    from tests.fixtures.lean_bundle import write_lean_bundle

    return write_lean_bundle(tmp_path_factory.mktemp("lean_bundle") / "bundle")


@pytest.fixture(scope="session")
def lean_split_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`lean_bundle` with a split encoder (docs/bundle.md "Split encoder"): the encoder returns `item_states`
    and `models.item_head` turns them into `item_vector`. Read-only."""
    from tests.fixtures.lean_bundle import LeanSpec, write_lean_bundle

    return write_lean_bundle(tmp_path_factory.mktemp("lean_split_bundle") / "bundle", LeanSpec(split=True))
