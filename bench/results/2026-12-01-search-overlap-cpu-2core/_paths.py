"""Puts ../2026-11-30-search-110k-lexical-cpu-2core (its `common.py`: the 110k bundle's four query families) on
the import path of the scripts here."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "2026-11-30-search-110k-lexical-cpu-2core"))
