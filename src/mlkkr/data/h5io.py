"""HDF5 files of :class:`ExchangePair` and :class:`ImpurityEmbedding` records (columnar, documented).

Schema ``mlkkr.exchange`` version 1 (group ``/exchange``, n records; ragged lists by offsets)::

    /                    attrs: schema, schema_version, mlkkr_version, n_records,
                                parameters (JSON: every input parameter of the run, incl. the engine
                                version, host, k-grid, contour, sampler and seed), units (JSON)
    /exchange/host            (n,)     str     host name
    /exchange/cell            (n,3,3)  f8  Å   host lattice vectors (rows)
    /exchange/species_i       (n,)     str     magnetic species i
    /exchange/species_j       (n,)     str     magnetic species j
    /exchange/position_i      (n,3)    f8  Å
    /exchange/position_j      (n,3)    f8  Å
    /exchange/distance        (n,)     f8  Å   |position_j − position_i|
    /exchange/tensor          (n,3,3)  f8  meV J_ij, E = −Σ_{i<j} e_i·J_ij·e_j (J > 0: ferromagnetic)
    /exchange/J               (n,)     f8  meV Tr(J_ij)/3
    /exchange/D               (n,3)    f8  meV (A_yz, A_zx, A_xy), A = (J_ij − J_ijᵀ)/2
    /exchange/S               (n,3,3)  f8  meV symmetric traceless part
    /exchange/env_offset      (n+1,)   i8      record r's environment is rows env_offset[r]:env_offset[r+1]
    /exchange/env_species     (m,)     str     other defects ("Vac" = vacancy)
    /exchange/env_positions   (m,3)    f8  Å
    /exchange/sample_index    (n,)     i8      record's index in its sampler stream (−1: none)
    /exchange/provenance_index (n,)    i8      row of /exchange/provenance for record r
    /exchange/provenance      (k,)     str     distinct provenance records (JSON; a record's
                                               provenance is this plus its sample_index)

Schema ``mlkkr.embedding`` version 1 (group ``/embedding``)::

    /embedding/host, cell            as above
    /embedding/defect_offset  (n+1,)   i8      defects of record r: rows defect_offset[r]:defect_offset[r+1]
    /embedding/species        (m,)     str
    /embedding/positions      (m,3)    f8  Å
    /embedding/grid_offset    (n+1,)   i8      grid of record r: rows grid_offset[r]:grid_offset[r+1]
    /embedding/grid           (g,3)    f8  Å   grid points (defect sites first)
    /embedding/delta_v        (g,)     f8  eV  converged ΔV
    /embedding/delta_n        (g,)     f8  e   displaced electrons (NaN where the source has none)
    /embedding/v_bare         (g,)     f8  eV  bare potential (NaN where the source has none)
    /embedding/converged      (n,)     u1
    /embedding/iterations     (n,)     i8
    /embedding/sample_index, provenance_index, provenance   as above

Writing is deterministic (no timestamps, fixed HDF5 format versions, sorted JSON): the same records
and parameters give byte-identical files. A file is written to a temporary name in the target
folder and renamed into place (``os.replace``), so an error never leaves a half-written file; the
temporary of a killed write (its writer's process gone, or older than an hour) is removed by the next
write of the same target.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mlkkr import __version__ as MLKKR_VERSION
from mlkkr.data.schema import ExchangePair, ImpurityEmbedding, RadialEmbedding
from mlkkr.errors import InputError

EXCHANGE_SCHEMA = "mlkkr.exchange"
EMBEDDING_SCHEMA = "mlkkr.embedding"
RADIAL_SCHEMA = "mlkkr.radial"
SCHEMA_VERSION = 1
_STR = h5py.string_dtype(encoding="utf-8")
_LIBVER = ("earliest", "v110")
UNITS = {"position": "angstrom", "cell": "angstrom", "tensor": "meV", "potential": "eV",
         "charge": "electrons"}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks: the dataset checksum that ``mlkkr train`` records in
    model.json, ``mlkkr evaluate`` compares and DatasetData keeps as its ``sha256`` attribute."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, numpy values as plain numbers) — byte-stable."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: A temporary file of a write that was killed is removed by the next write of the same target once it is
#: older than this (seconds), whoever wrote it; see :func:`clean_stale_temporaries`.
STALE_TMP_SECONDS = 3600.0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # never claim "gone" for a pid we cannot check
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    return True


def clean_stale_temporaries(path: str | Path, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left beside it; return the removed paths.

    A temporary is ``.<name>.<host>-<pid>.<random>.h5.tmp`` (``.<name>.<random>.h5.tmp`` before issue 15).
    It is stale, and removed, when its writer ran on this host and that process is gone, or when it was
    last modified more than ``max_age`` seconds ago (a write takes seconds: the records are built before
    the file is opened; a writer on another host of a shared folder cannot be asked, so only age counts
    for it). A live writer's file is never touched: its pid exists, and it keeps the file fresh while it
    writes. Only regular files of exactly this target's pattern are considered (no links, no other names).
    """
    import re
    import socket
    import stat
    import time

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(?P<host>[^/]+)-(?P<pid>\d+)\.)?[A-Za-z0-9_]{{8}}\.h5\.tmp")
    host, now, removed = socket.gethostname(), time.time(), []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if not m:
            continue
        tmp = folder / name
        try:
            st = os.lstat(tmp)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        dead = m["pid"] is not None and m["host"] == host and not _pid_alive(int(m["pid"]))
        if dead or now - st.st_mtime > max_age:
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def atomic_write(path: str | Path, write: Callable[[h5py.File], None]) -> Path:
    """Write an HDF5 file through ``write(h5file)`` to a temporary file, then rename it into place.

    The temporary (``.<name>.<host>-<pid>.<random>.h5.tmp`` in the target folder) is removed on any error;
    one left by a killed write is removed by the next write of the same target
    (:func:`clean_stale_temporaries`)."""
    import socket

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("output", str(path), reason=f"folder {str(folder)!r} does not exist")
    clean_stale_temporaries(path)
    tag = f"{socket.gethostname().replace('/', '_')}-{os.getpid()}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{tag}.", suffix=".h5.tmp", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _ds(g: h5py.Group, name: str, data: Any, units: str, description: str, dtype: Any = None) -> None:
    d = g.create_dataset(name, data=data, dtype=dtype, track_times=False)
    d.attrs["units"] = units
    d.attrs["description"] = description


def _root_attrs(f: h5py.File, schema: str, n: int, parameters: dict[str, Any]) -> None:
    f.attrs["schema"] = schema
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["mlkkr_version"] = MLKKR_VERSION
    f.attrs["n_records"] = n
    f.attrs["parameters"] = to_json(parameters)
    f.attrs["units"] = to_json(UNITS)


def _provenance(g: h5py.Group, records: Sequence[Any]) -> None:
    """Per-record provenance: the shared part once (deduplicated), ``sample_index`` as a column."""
    table: dict[str, int] = {}
    idx, sample = [], []
    for r in records:
        prov = dict(r.provenance)
        sample.append(int(prov.pop("sample_index", -1)))
        idx.append(table.setdefault(to_json(prov), len(table)))
    _ds(g, "sample_index", np.array(sample, np.int64), "",
        "index of the record in its sampler's stream (-1: none); rng = default_rng([seed, sample_index])")
    _ds(g, "provenance_index", np.array(idx, np.int64), "", "row of provenance for each record")
    _ds(g, "provenance", list(table), "", "distinct provenance records (JSON)", _STR)


def _read_provenance(g: h5py.Group) -> list[dict[str, Any]]:
    table = [json.loads(s) for s in _strs(g["provenance"])]
    out = []
    for i, s in zip(g["provenance_index"][()], g["sample_index"][()], strict=True):
        prov = dict(table[i])
        if s >= 0:
            prov["sample_index"] = int(s)
        out.append(prov)
    return out


def write_exchange(path: str | Path, pairs: Sequence[ExchangePair], parameters: dict[str, Any]) -> Path:
    """Write exchange pairs (schema ``mlkkr.exchange`` v1) atomically; returns the path."""
    n = len(pairs)

    def write(f: h5py.File) -> None:
        _root_attrs(f, EXCHANGE_SCHEMA, n, parameters)
        g = f.create_group("exchange")
        t = np.array([p.tensor for p in pairs], float).reshape(n, 3, 3)
        sym = (t + t.transpose(0, 2, 1)) / 2
        iso = np.trace(t, axis1=1, axis2=2) / 3
        anti = (t - t.transpose(0, 2, 1)) / 2
        env_n = [len(p.environment_species) for p in pairs]
        _ds(g, "host", [p.host for p in pairs], "", "host name", _STR)
        _ds(g, "cell", np.array([p.cell for p in pairs], float).reshape(n, 3, 3), "angstrom",
            "host lattice vectors (rows)")
        _ds(g, "species_i", [p.species_i for p in pairs], "", "magnetic species i", _STR)
        _ds(g, "species_j", [p.species_j for p in pairs], "", "magnetic species j", _STR)
        _ds(g, "position_i", np.array([p.position_i for p in pairs], float).reshape(n, 3), "angstrom",
            "position of i")
        _ds(g, "position_j", np.array([p.position_j for p in pairs], float).reshape(n, 3), "angstrom",
            "position of j")
        _ds(g, "distance", np.array([p.distance for p in pairs], float), "angstrom", "|r_j - r_i|")
        _ds(g, "tensor", t, "meV", "J_ij; E = -sum_{i<j} e_i.J_ij.e_j (J > 0 ferromagnetic)")
        _ds(g, "J", iso, "meV", "isotropic exchange Tr(J_ij)/3")
        _ds(g, "D", np.stack([anti[:, 1, 2], anti[:, 2, 0], anti[:, 0, 1]], -1).reshape(n, 3), "meV",
            "DMI (A_yz, A_zx, A_xy), A = (J_ij - J_ij^T)/2")
        _ds(g, "S", sym - iso[:, None, None] * np.eye(3), "meV", "symmetric traceless anisotropy")
        _ds(g, "env_offset", np.concatenate([[0], np.cumsum(env_n)]).astype(np.int64), "",
            "environment of record r: rows env_offset[r]:env_offset[r+1]")
        _ds(g, "env_species", [s for p in pairs for s in p.environment_species], "", "other defects", _STR)
        envp = [p.environment_positions for p in pairs if len(p.environment_positions)]
        _ds(g, "env_positions", np.concatenate(envp).reshape(-1, 3) if envp else np.zeros((0, 3)), "angstrom",
            "positions of the other defects")
        _provenance(g, pairs)

    return atomic_write(path, write)


def write_embeddings(path: str | Path, records: Sequence[ImpurityEmbedding], parameters: dict[str, Any]) -> Path:
    """Write impurity embeddings (schema ``mlkkr.embedding`` v1) atomically; returns the path."""
    n = len(records)

    def opt(r: ImpurityEmbedding, a: np.ndarray) -> np.ndarray:
        return a if len(a) == len(r.grid) else np.full(len(r.grid), np.nan)

    def write(f: h5py.File) -> None:
        _root_attrs(f, EMBEDDING_SCHEMA, n, parameters)
        g = f.create_group("embedding")
        dn = [len(r.species) for r in records]
        gn = [len(r.grid) for r in records]
        _ds(g, "host", [r.host for r in records], "", "host name", _STR)
        _ds(g, "cell", np.array([r.cell for r in records], float).reshape(n, 3, 3), "angstrom",
            "host lattice vectors (rows)")
        _ds(g, "defect_offset", np.concatenate([[0], np.cumsum(dn)]).astype(np.int64), "",
            "defects of record r: rows defect_offset[r]:defect_offset[r+1]")
        _ds(g, "species", [s for r in records for s in r.species], "", "defect species", _STR)
        _ds(g, "positions", _cat([r.positions for r in records]), "angstrom", "defect positions")
        _ds(g, "grid_offset", np.concatenate([[0], np.cumsum(gn)]).astype(np.int64), "",
            "grid of record r: rows grid_offset[r]:grid_offset[r+1]")
        _ds(g, "grid", _cat([r.grid for r in records]), "angstrom", "grid points (defect sites first)")
        _ds(g, "delta_v", _cat1([r.delta_v for r in records]), "eV", "converged potential shift")
        _ds(g, "delta_n", _cat1([opt(r, r.delta_n) for r in records]), "electrons", "displaced electrons")
        _ds(g, "v_bare", _cat1([opt(r, r.v_bare) for r in records]), "eV", "bare potential")
        _ds(g, "converged", np.array([r.converged for r in records], np.uint8), "", "self-consistency reached")
        _ds(g, "iterations", np.array([r.iterations for r in records], np.int64), "", "SCF iterations")
        _provenance(g, records)

    return atomic_write(path, write)


def write_radial(path: str | Path, records: Sequence[RadialEmbedding], parameters: dict[str, Any]) -> Path:
    """Write all-electron embeddings (schema ``mlkkr.radial`` v1) atomically; returns the path."""
    n = len(records)

    def write(f: h5py.File) -> None:
        _root_attrs(f, RADIAL_SCHEMA, n, parameters)
        g = f.create_group("radial")
        na = [len(r.species) for r in records]
        npts = [len(m) for r in records for m in r.r]
        _ds(g, "host", [r.host for r in records], "", "host label", _STR)
        _ds(g, "cell", np.array([r.cell for r in records], float).reshape(n, 3, 3), "angstrom",
            "host lattice vectors (rows)")
        _ds(g, "atom_offset", np.concatenate([[0], np.cumsum(na)]).astype(np.int64), "",
            "atoms of record r: rows atom_offset[r]:atom_offset[r+1]")
        _ds(g, "species", [s for r in records for s in r.species], "", "cluster atom species", _STR)
        _ds(g, "host_species", [s for r in records for s in r.host_species], "", "host atom replaced", _STR)
        _ds(g, "z", _cat1([r.z for r in records]), "", "nuclear charge")
        _ds(g, "host_z", _cat1([r.host_z for r in records]), "", "nuclear charge of the host atom replaced")
        _ds(g, "positions", _cat([r.positions for r in records]), "angstrom", "cluster atoms, centre at 0")
        _ds(g, "mesh_offset", np.concatenate([[0], np.cumsum(npts)]).astype(np.int64), "",
            "radial mesh of atom a (over all records): mesh_offset[a]:mesh_offset[a+1]")
        _ds(g, "r", _cat1([m for r in records for m in r.r]), "angstrom", "radial mesh")
        _ds(g, "delta_v", _cat1([v for r in records for v in r.delta_v]), "eV",
            "V_imp - V_host of the stored spherical potentials, nuclear -2Z/r excluded")
        _ds(g, "converged", np.array([r.converged for r in records], np.uint8), "", "self-consistency reached")
        _ds(g, "rms", np.array([r.rms for r in records], float), "", "last rms of the self-consistency")
        _ds(g, "iterations", np.array([r.iterations for r in records], np.int64), "", "SCF iterations")
        _provenance(g, records)

    return atomic_write(path, write)


def read_radial(path: str | Path) -> list[RadialEmbedding]:
    """Read every record of an ``mlkkr.radial`` file."""
    with _open(path, RADIAL_SCHEMA) as f:
        g = f["radial"]
        host, cell = _strs(g["host"]), g["cell"][()]
        aoff, sp, hsp = g["atom_offset"][()], _strs(g["species"]), _strs(g["host_species"])
        z, hz, pos = g["z"][()], g["host_z"][()], g["positions"][()]
        moff, rr, dv = g["mesh_offset"][()], g["r"][()], g["delta_v"][()]
        conv, rms, its = g["converged"][()], g["rms"][()], g["iterations"][()]
        prov = _read_provenance(g)
    out = []
    for k in range(len(host)):
        a, b = int(aoff[k]), int(aoff[k + 1])
        out.append(RadialEmbedding(
            host=host[k], species=sp[a:b], z=z[a:b], host_species=hsp[a:b], host_z=hz[a:b], positions=pos[a:b],
            r=[rr[moff[i]:moff[i + 1]] for i in range(a, b)], delta_v=[dv[moff[i]:moff[i + 1]] for i in range(a, b)],
            cell=cell[k], converged=bool(conv[k]), rms=float(rms[k]), iterations=int(its[k]), provenance=prov[k]))
    return out


def _cat(arrs: list[np.ndarray]) -> np.ndarray:
    arrs = [a.reshape(-1, 3) for a in arrs]
    return np.concatenate(arrs) if arrs else np.zeros((0, 3))


def _cat1(arrs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrs).astype(float) if arrs else np.zeros(0)


def _open(path: str | Path, schema: str) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise InputError("file", str(path), reason=f"cannot open as HDF5: {exc}") from None
    if f.attrs.get("schema") != schema:
        f.close()
        raise InputError("file", str(path), reason=f"not an {schema} file (schema attribute)")
    if int(f.attrs.get("schema_version", -1)) > SCHEMA_VERSION:
        f.close()
        raise InputError("file", str(path), reason="written by a newer mlkkr (schema_version)")
    return f


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The run parameters stored in a file's root attributes."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["parameters"])


def _strs(d: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in d[()]]


def read_exchange(path: str | Path) -> list[ExchangePair]:
    """Read every record of an ``mlkkr.exchange`` file."""
    with _open(path, EXCHANGE_SCHEMA) as f:
        g = f["exchange"]
        host, si, sj = _strs(g["host"]), _strs(g["species_i"]), _strs(g["species_j"])
        cell, pi, pj, t = g["cell"][()], g["position_i"][()], g["position_j"][()], g["tensor"][()]
        off, es, ep = g["env_offset"][()], _strs(g["env_species"]), g["env_positions"][()]
        prov = _read_provenance(g)
    return [ExchangePair(host=host[r], species_i=si[r], species_j=sj[r], position_i=pi[r], position_j=pj[r],
                         tensor=t[r], environment_species=es[off[r]:off[r + 1]],
                         environment_positions=ep[off[r]:off[r + 1]], cell=cell[r], provenance=prov[r])
            for r in range(len(host))]


def read_embeddings(path: str | Path) -> list[ImpurityEmbedding]:
    """Read every record of an ``mlkkr.embedding`` file."""
    with _open(path, EMBEDDING_SCHEMA) as f:
        g = f["embedding"]
        host, cell = _strs(g["host"]), g["cell"][()]
        doff, sp, pos = g["defect_offset"][()], _strs(g["species"]), g["positions"][()]
        goff, grid = g["grid_offset"][()], g["grid"][()]
        dv, dn, vb = g["delta_v"][()], g["delta_n"][()], g["v_bare"][()]
        conv, its = g["converged"][()], g["iterations"][()]
        prov = _read_provenance(g)
    out = []
    for r in range(len(host)):
        a, b = goff[r], goff[r + 1]
        out.append(ImpurityEmbedding(host=host[r], species=sp[doff[r]:doff[r + 1]],
                                     positions=pos[doff[r]:doff[r + 1]], grid=grid[a:b], delta_v=dv[a:b],
                                     delta_n=dn[a:b], v_bare=vb[a:b], cell=cell[r], converged=bool(conv[r]),
                                     iterations=int(its[r]), provenance=prov[r]))
    return out
