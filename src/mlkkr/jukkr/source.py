"""The pinned JuKKR source and regression cases: where they come from, and the checks that they are it.

A local tarball (a path, or ``$MLKKR_JUKKR_SOURCE`` / ``$MLKKR_JUKKR_TESTS``) must have the recorded
SHA-256 before anything is unpacked. Without one, the public mirror's archive of the pinned commit is
downloaded (GitHub's archives are not byte-stable, so there is no file checksum to check): it is
unpacked with limits on size and member count, with tarfile's ``data`` filter (no links out of the
folder, no devices, no absolute paths), and then every file the build or the check reads is compared
through the tree checksum (:func:`tree_sha256`). A mismatch stops with the two checksums.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlkkr import jukkr
from mlkkr.errors import InputError, ServiceError

#: limits of what is unpacked from an archive (the pinned source is 29 MB unpacked, 2,900 files)
MAX_UNPACKED_BYTES = 400 * 1024**2
MAX_MEMBERS = 20_000
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _selected(rel: str, paths: Iterable[str]) -> bool:
    return not rel.endswith(".pdf") and any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


def tree_sha256(root: Path, paths: Iterable[str]) -> tuple[int, str]:
    """(number of files, SHA-256 of their sorted ``"<sha256>  <relative path>"`` lines) under ``root``.

    Only files under ``paths`` count, PDFs excepted; a symlink counts as the file it points to and is
    refused when that lies outside ``root``.
    """
    paths = tuple(paths)
    lines = []
    top = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            link = Path(dirpath) / name
            if link.is_symlink() and not link.resolve().is_relative_to(top):
                raise InputError("source", str(link), reason="a symlink in the JuKKR files points outside them")
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if _selected(rel, paths):
                lines.append((rel, f"{file_sha256(path)}  {rel}"))
    lines.sort()
    text = "".join(line + "\n" for _, line in lines)
    return len(lines), hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Pin:
    """One pinned tarball: its file name and checksum, and the tree checksum of what is used from it."""

    what: str  # "source" or "tests"
    tarball: str
    sha256: str
    paths: tuple[str, ...]
    files: int
    tree_sha256: str
    env: str

    def verify_tree(self, root: Path) -> None:
        n, digest = tree_sha256(root, self.paths)
        if (n, digest) != (self.files, self.tree_sha256):
            raise InputError(self.what, str(root), reason=f"the JuKKR {self.what} files differ from commit "
                             f"{jukkr.SHORT}: {n} files with tree SHA-256 {digest}, expected {self.files} files "
                             f"with {self.tree_sha256}")


SOURCE = Pin("source", jukkr.SOURCE_TARBALL, jukkr.SOURCE_SHA256, jukkr.SOURCE_PATHS, jukkr.SOURCE_FILES,
             jukkr.SOURCE_TREE_SHA256, "MLKKR_JUKKR_SOURCE")
TESTS = Pin("tests", jukkr.TESTS_TARBALL, jukkr.TESTS_SHA256, tuple(jukkr.TEST_CASES.values()), jukkr.TESTS_FILES,
            jukkr.TESTS_TREE_SHA256, "MLKKR_JUKKR_TESTS")


def _safe_extract(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` into ``into`` (bounded, data filter); return its single top-level folder."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = 0, 0
            for member in tar:
                members += 1
                total += max(member.size, 0)
                if members > MAX_MEMBERS or total > MAX_UNPACKED_BYTES:
                    raise InputError("source", str(archive), reason=f"the archive unpacks to more than "
                                     f"{MAX_MEMBERS} files or {MAX_UNPACKED_BYTES // 1024**2} MiB")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError("source", str(archive), reason=f"not a readable tar archive ({exc})") from None
    tops = [p for p in into.iterdir()]
    if len(tops) != 1 or not tops[0].is_dir():
        raise InputError("source", str(archive), reason="the archive must hold one top-level folder")
    return tops[0]


def _download(url: str, dest: Path, progress: bool = True) -> Path:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=f"download JuKKR {jukkr.SHORT}",
                      disable=not progress) as bar:
                total = 0
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    total += len(chunk)
                    if total > MAX_UNPACKED_BYTES:
                        raise InputError("source", url, reason="the download is larger than "
                                         f"{MAX_UNPACKED_BYTES // 1024**2} MiB")
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        raise ServiceError(f"could not download JuKKR {jukkr.SHORT} from {url} ({exc}); give the source "
                           f"tarball {jukkr.SOURCE_TARBALL} with --source or ${SOURCE.env}") from None
    return dest


def local_tarball(pin: Pin, path: str | os.PathLike | None) -> Path | None:
    """The tarball given (argument, else ``$<pin.env>``; for the tests also beside the source), checked."""
    given = path or os.environ.get(pin.env)
    if not given and pin is TESTS and os.environ.get(SOURCE.env):
        sibling = Path(os.environ[SOURCE.env]).with_name(pin.tarball)
        given = str(sibling) if sibling.is_file() else None
    if not given:
        return None
    tarball = Path(given).expanduser()
    if not tarball.is_file():
        raise InputError(pin.what, str(tarball), reason=f"no such file (the JuKKR {pin.what} tarball "
                         f"{pin.tarball}; set --{pin.what} or ${pin.env})")
    digest = file_sha256(tarball)
    if digest != pin.sha256:
        raise InputError(pin.what, str(tarball), reason=f"SHA-256 {digest} is not the pinned {pin.tarball} "
                         f"({pin.sha256})")
    return tarball


def unpack(pin: Pin, path: str | os.PathLike | None, workdir: Path, progress: bool = True) -> Path:
    """The verified tree of ``pin`` unpacked under ``workdir``: from the local tarball, else the mirror."""
    tarball = local_tarball(pin, path)
    workdir.mkdir(parents=True, exist_ok=True)
    if tarball is None:
        tarball = _download(jukkr.MIRROR_ARCHIVE, workdir / f"jukkr-{jukkr.SHORT}-download.tar.gz", progress)
    root = _safe_extract(tarball, Path(tempfile.mkdtemp(prefix=f"{pin.what}-", dir=workdir)))
    pin.verify_tree(root)
    return root


def describe(pin: Pin, path: str | os.PathLike | None) -> str:
    """Where ``pin`` would come from: the local tarball's path, or the mirror's URL."""
    tarball = local_tarball(pin, path)
    return str(tarball) if tarball is not None else jukkr.MIRROR_ARCHIVE
