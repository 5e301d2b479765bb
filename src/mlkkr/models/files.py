"""Checks of a trained model folder as it comes back from the shared store (every model kind).

A model folder is ``model.json`` plus weight/array files. Since issue 15, saving records the SHA-256 of
every weight/array file in ``model.json`` under ``"files": {name: sha256}``, and loading verifies them:
a changed, truncated or missing file is an :class:`InputError` naming the file, never a model that
silently predicts something else. The checksums catch damage and mismatched copies (a partial sync, a
weights file from another training run); they are no signature: whoever can rewrite the weights can
rewrite ``model.json`` too. Folders written before this change have no ``"files"`` entry: they load as
before (unverified), as long as their weight files are present.

``model.json`` itself must be a JSON object, and the numbers the model computes with (its configuration
and statistics, named by each kind's loader) must be finite: NaN or ±inf there would give NaN
predictions with exit status 0. Reports such as ``metrics`` may hold NaN (an R² of a constant truth).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mlkkr.data.h5io import file_sha256
from mlkkr.errors import InputError

META = "model.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def checksums(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` in ``folder`` (the ``"files"`` entry of model.json)."""
    folder = Path(folder)
    return {name: file_sha256(folder / name) for name in sorted(names)}


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON object in ``folder/model.json``; :class:`InputError` naming model.json when it is absent,
    truncated, not JSON or not an object."""
    folder = Path(folder)
    path = folder / META
    if not path.is_file():
        raise InputError("MODEL", str(folder), reason=f"{folder} is not an mlkkr model folder (no {META})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(META, str(path), reason=f"{META} is not valid JSON (truncated or damaged?): "
                         f"{str(exc)[:200]}") from None
    if not isinstance(meta, dict):
        raise InputError(META, str(path), reason=f"{META} holds a {type(meta).__name__}, not a JSON object")
    return meta


def check_finite(meta: dict[str, Any], keys: Sequence[str]) -> None:
    """:class:`InputError` naming the key path (``model.json:model.stats.std0``) of the first NaN or
    infinite number under the top-level ``keys`` of ``meta`` (absent keys are skipped)."""
    def walk(value: Any, path: str) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{META}:{path}", value, reason=f"{path} in {META} is {value}, not a finite number "
                             "(the model would predict NaN); the file is damaged or was edited")
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    for key in keys:
        if key in meta:
            walk(meta[key], key)


def verify_files(folder: str | Path, meta: dict[str, Any], required: Sequence[str]) -> None:
    """Every file in ``required`` is present, and every file recorded in ``meta["files"]`` matches its
    recorded SHA-256 (no ``"files"`` entry: a folder written before checksums were recorded; only presence
    is checked). :class:`InputError` naming the file otherwise."""
    folder = Path(folder)
    files = meta.get("files")
    if files is not None:
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in files.items()):
            raise InputError(f"{META}:files", files, reason="expected {file name: sha256 hex digest}")
        for name in files:
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise InputError(f"{META}:files", name, reason="names a file outside the model folder")
        unlisted = [name for name in required if name not in files]
        if unlisted:
            raise InputError(f"{META}:files", sorted(files), reason=f"records no checksum for {', '.join(unlisted)}")
    for name in required:
        if not (folder / name).is_file():
            raise InputError("MODEL", str(folder / name), reason=f"the model's file {name} is missing from {folder}")
    for name, want in (files or {}).items():
        path = folder / name
        if not path.is_file():
            raise InputError("MODEL", str(path), reason=f"{name} is missing from {folder}: it does not match its "
                             f"recorded checksum (sha256 {want[:16]}… in {META})")
        got = file_sha256(path)
        if got != want:
            raise InputError("MODEL", str(path), reason=f"{name} does not match its recorded checksum (sha256 "
                             f"{want[:16]}… in {META}, the file has {got[:16]}…): it was changed or damaged "
                             "after training")
