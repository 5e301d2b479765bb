"""Helpers of the archive tests (a module of its own: ``conftest`` is ambiguous between folders)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def aiida_run(home: Path, code: str, timeout: float = 180) -> str:
    """Run Python ``code`` against the AiiDA profile of the user whose home is ``home``."""
    env = dict(os.environ, AIIDA_PATH=str(home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class ArchiveFiles:
    good: Path
    truncated: Path
    altered: Path
    sha256: str
    uuids: frozenset[str]
    node_count: int
    arrays: dict[str, str]  # uuid -> sha256 of the array bytes


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def array_checksums(nodes) -> dict[str, str]:
    """uuid -> SHA-256 over the names, dtypes, shapes and bytes of an ArrayData's arrays."""
    out = {}
    for node in nodes:
        digest = hashlib.sha256()
        for name in sorted(node.get_arraynames()):
            array = node.get_array(name)
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        out[node.uuid] = digest.hexdigest()
    return out


def alter_member(source: Path, dest: Path, member: str = "db.sqlite3") -> None:
    """Copy ``source`` with one byte flipped in the middle of ``member``'s compressed data."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(member)
    header = data[info.header_offset: info.header_offset + 30]
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    dest.write_bytes(bytes(data))
