"""Helpers of the mlkkr.aiida tests: the reference aiida-kkr archives (checked, never written to)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("MLKKR_KKR_REFERENCE", ROOT.parent / "shared" / "kkr-reference"))


def reference_archive(name: str) -> Path:
    """A reference aiida-kkr archive, its SHA-256 checked against SHA256SUMS (never written to)."""
    path = REFERENCE / name
    sums = REFERENCE / "SHA256SUMS"
    if not path.is_file() or not sums.is_file():
        pytest.fail(f"reference archive {path} (and SHA256SUMS) missing: set MLKKR_KKR_REFERENCE")
    expected = {line.split()[1].lstrip("*"): line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert expected.get(name) == digest, f"{name}: checksum {digest} differs from SHA256SUMS"
    return path
