"""Read exchange pairs computed by JuKKR through aiida-kkr (``kkr_jij_wc``) into :class:`ExchangePair`.

Source format (aiida-kkr 2.x, ``aiida_kkr.tools.jij_tools``): the workflow's ``jij_data`` output is
an ``ArrayData`` with

* ``Jij_expanded`` (n, 6): ``i, j, da, db, dc, J`` (meV) — isotropic solver; or (n, 18):
  ``i, j, da, db, dc, J, D_x, D_y, D_z, J_xx, J_xy, J_xz, J_yx, J_yy, J_yz, J_zx, J_zy, J_zz`` (meV) —
  full-tensor solver, whose nine tensor columns hold only the *symmetric* part (J_xy = J_yx);
* ``positions_expanded`` (n, 3): the bond vector r_j − r_i (Å) of each pair;

``i`` and ``j`` index the sites of the whole crystal (found through the provenance by :func:`jij_crystal`;
the workflow's ``structure_jij_sites`` output holds only the J_ij sites). aiida-kkr already
converts to meV and flips the sign so that J > 0 is ferromagnetic, and J = Tr/3 — mlkkr's convention
(:mod:`mlkkr.greens.exchange`). Conversions made here, explicitly:

* D: as JuKKR's KKRhost writes it — ``(J_x′y′ − J_y′x′)/2`` in each run's frame, with the ½
  (source/KKRhost/tbxccpljijdij.F90, ``jtmp(2)``), the sign of ``−D·(S_i × S_j)`` — which is mlkkr's D
  of ``A = (J − Jᵀ)/2``; aiida-kkr copies it unchanged. (Its *impurity* parser writes D without the ½:
  :func:`mlkkr.data.schema.dmi_from_aiida_kkr` is for that one, not used here.) The symmetric part: aiida-kkr
  2.3.1 assembles it from the three runs in wrong local frames (:mod:`mlkkr.aiida.kkr_compat`,
  ``jij_tensor_frames``); :func:`pairs_from_workflow` re-assembles it from the runs' own files
  (:func:`reassembled_tensors`) and records which assembly it used in ``provenance["anisotropy"]``.
  The tensor is ``J·1 + S + A(D)``.
* Isotropic-only results (6 columns) become ``J·1``; their ``provenance["tensor_parts"]`` is
  ``["J"]`` (D and S were not computed, not measured zero).
* Pair counting is the source's (JuKKR); it is recorded, not converted.

Each pair's environment is every atom of the periodic crystal within ``env_cutoff`` Å of i or j,
with its element (``provenance["environment_includes_host"] = True``); ``host`` is the crystal's
formula. Archives are read without importing them into the user's profile: a read-only profile on
the archive file itself (aiida-core's ``core.sqlite_zip`` storage), migrated first in a temporary
copy when it was written by an older aiida-core.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mlkkr.data.schema import ExchangePair
from mlkkr.errors import InputError

#: Two positions closer than this (Å) are the same site.
SAME_SITE = 0.05

#: Workflows whose ``jij_data`` output this reader understands.
JIJ_WORKFLOWS = ("kkr_jij_wc",)


def _compose(j: float, d: np.ndarray, s: np.ndarray) -> np.ndarray:
    a = np.zeros((3, 3))
    a[1, 2], a[2, 0], a[0, 1] = d
    return j * np.eye(3) + np.asarray(s, float) + a - a.T


def _from_symmetric(sym: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The tensor J·1 + S + A(D) of a symmetric part ``sym`` (J = Tr/3, S the rest) and a D vector."""
    j = float(np.trace(sym) / 3)
    return _compose(j, d, sym - j * np.eye(3))


def tensors_from_jij_expanded(table: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """mlkkr tensors (n, 3, 3) meV from aiida-kkr's ``Jij_expanded`` table; and the parts it holds."""
    table = np.asarray(table, float)
    if table.ndim != 2 or table.shape[1] not in (6, 18):
        raise InputError("jij_data.Jij_expanded", list(table.shape),
                         reason="expected 6 (isotropic) or 18 (full tensor) columns")
    n = len(table)
    if table.shape[1] == 6:
        return table[:, 5, None, None] * np.eye(3)[None], ["J"]
    out = np.empty((n, 3, 3))
    for r, row in enumerate(table):
        sym = row[9:18].reshape(3, 3)
        out[r] = _from_symmetric((sym + sym.T) / 2, row[6:9])
    return out, ["J", "D", "S"]


def _symbol(structure: Any, site: Any) -> str:
    kind = structure.get_kind(site.kind_name)
    return kind.symbols[0] if len(kind.symbols) == 1 else kind.name


def crystal_environment(structure: Any, centres: np.ndarray, cutoff: float) -> tuple[list[str], np.ndarray]:
    """Atoms of the periodic crystal ``structure`` within ``cutoff`` Å of any of ``centres`` (k, 3)."""
    cell = np.asarray(structure.cell, float)
    basis = np.array([s.position for s in structure.sites], float)
    symbols = [_symbol(structure, s) for s in structure.sites]
    inv = np.linalg.inv(cell)
    # enough cells to cover a sphere of radius cutoff + the spread of the centres
    reach = cutoff + np.max(np.linalg.norm(centres - centres.mean(axis=0), axis=1)) + np.max(
        np.linalg.norm(basis, axis=1), initial=0.0)
    nmax = int(np.ceil(reach * np.linalg.norm(inv, axis=0).max())) + 1
    g = np.arange(-nmax, nmax + 1)
    shifts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    origin = np.round(centres.mean(axis=0) @ inv)
    lattice = (shifts + origin) @ cell
    pts = (lattice[:, None, :] + basis[None]).reshape(-1, 3)
    names = symbols * len(lattice)
    dist = np.min(np.linalg.norm(pts[:, None] - centres[None], axis=-1), axis=1)
    # i and j themselves are excluded; the archive's bond vectors and its cell are rounded differently
    # (≈1e-6 Å), so "the same site" means closer than SAME_SITE
    keep = (dist <= cutoff + 1e-9) & (dist > SAME_SITE)
    return [n for n, k in zip(names, keep, strict=True) if k], pts[keep]


def reassembled_tensors(wc: Any, table: np.ndarray, bonds: np.ndarray) -> np.ndarray | None:
    """Full tensors (n, 3, 3) meV of a spin–orbit ``kkr_jij_wc`` rebuilt from its three KKRhost runs' own
    output with the local frames JuKKR uses (:func:`mlkkr.aiida.kkr_compat.full_tensor`; aiida-kkr 2.3.1
    assembles the symmetric part in wrong frames), D as in ``table``; None where the runs or their files are
    not there (an archive exported without them) or do not match ``table`` row for row."""
    from mlkkr.aiida.kkr_compat import full_tensor

    runs = {c.label[-1]: c for c in wc.called
            if c.process_label == "KkrCalculation" and c.label in ("jij_calc_x", "jij_calc_y", "jij_calc_z")
            and c.is_finished_ok}
    if set(runs) != {"x", "y", "z"}:
        return None
    try:
        from aiida_kkr.tools.jij_tools import get_jijs_shells  # the rows as aiida-kkr reads them
        from masci_tools.io.common_functions import get_aBohr2Ang

        raw = {k: np.array(get_jijs_shells(c)[0], float) for k, c in runs.items()}

        alat = float(runs["z"].outputs.output_parameters["alat_internal"]) * get_aBohr2Ang()
    except (ValueError, IndexError, KeyError, AttributeError, OSError):
        return None
    z, x, y = raw["z"], raw["x"], raw["y"]
    if not (z.shape == x.shape == y.shape and z.shape[1] >= 10 and np.allclose(z[:, 5:8], x[:, 5:8])
            and np.allclose(z[:, 5:8], y[:, 5:8])):
        return None
    out = np.empty((len(table), 3, 3))
    for r, (row, bond) in enumerate(zip(table, bonds, strict=True)):
        hit = np.flatnonzero((z[:, -1] == row[0] + 1) & (z[:, -2] == row[1] + 1)
                             & (np.linalg.norm(alat * z[:, 5:8] - bond, axis=1) < 1e-4))
        if len(hit) != 1:
            return None
        k = hit[0]
        out[r] = _from_symmetric(full_tensor(z[k], x[k], y[k]), row[6:9])
    return out


def pairs_from_jij_data(jij_data: Any, structure: Any, env_cutoff: float = 6.0,
                        provenance: dict[str, Any] | None = None, workflow: Any = None) -> list[ExchangePair]:
    """Exchange pairs from a ``jij_data`` ArrayData and the crystal (StructureData) its indices refer to.

    ``workflow``: the ``kkr_jij_wc`` that made them; full tensors are then re-assembled from its runs
    (:func:`reassembled_tensors`) and ``provenance["anisotropy"]`` says which assembly was used."""
    if not env_cutoff > 0:
        raise InputError("env_cutoff", env_cutoff, allowed="a positive distance in Å")
    names = set(jij_data.get_arraynames())
    for need in ("Jij_expanded", "positions_expanded"):
        if need not in names:
            raise InputError("jij_data", sorted(names), reason=f"node {jij_data.pk} has no array {need!r}")
    table = jij_data.get_array("Jij_expanded")
    bonds = np.asarray(jij_data.get_array("positions_expanded"), float).reshape(-1, 3)
    if len(table) != len(bonds):
        raise InputError("jij_data", [len(table), len(bonds)], reason="Jij_expanded and positions_expanded "
                         "differ in length")
    tensors, parts = tensors_from_jij_expanded(table)
    anisotropy = {}
    if table.shape[1] == 18:
        again = reassembled_tensors(workflow, table, bonds) if workflow is not None else None
        if again is not None:
            tensors = again
        anisotropy = {"anisotropy": "re-assembled from the m∥x, m∥y, m∥z runs (JuKKR's frames)" if again is not None
                      else "as in jij_data, not re-assembled (the runs were not at hand): "
                      "right if it was made with mlkkr's jij_tensor_frames fix in effect"}
    sites = structure.sites
    formula = structure.get_formula()
    cell = np.asarray(structure.cell, float)
    base = {"source": "aiida-kkr", "jij_data_uuid": jij_data.uuid, "structure_uuid": structure.uuid,
            "tensor_parts": parts, "environment_includes_host": True, "environment_cutoff": float(env_cutoff),
            "conversion": "J, D as aiida-kkr (meV, J > 0 ferromagnetic, D of (J − Jᵀ)/2, pair counting as JuKKR)",
            **anisotropy, **(provenance or {})}
    out = []
    for r, (row, bond, t) in enumerate(zip(table, bonds, tensors, strict=True)):
        i, j = int(row[0]), int(row[1])
        if not (0 <= i < len(sites) and 0 <= j < len(sites)):
            raise InputError(f"jij_data.Jij_expanded[{r}]", [i, j], reason="site index outside the structure")
        pi = np.asarray(sites[i].position, float)
        pj = pi + bond
        env_sp, env_pos = crystal_environment(structure, np.stack([pi, pj]), env_cutoff)
        out.append(ExchangePair(host=formula, species_i=_symbol(structure, sites[i]),
                                species_j=_symbol(structure, sites[j]), position_i=pi, position_j=pj, tensor=t,
                                environment_species=env_sp, environment_positions=env_pos, cell=cell,
                                provenance={**base, "row": r, "cell_offset": [int(x) for x in row[2:5]]}))
    return out


def pairs_from_workflow(wc: Any, env_cutoff: float = 6.0) -> list[ExchangePair]:
    """Exchange pairs of a finished ``kkr_jij_wc`` workflow node."""
    if wc.process_label not in JIJ_WORKFLOWS:
        raise InputError("node", f"{wc.pk} ({wc.process_label})", allowed=JIJ_WORKFLOWS)
    if not wc.is_finished_ok:
        raise InputError("node", wc.pk, reason=f"workflow {wc.pk} did not finish ok (exit status {wc.exit_status})")
    outputs = wc.outputs
    return pairs_from_jij_data(outputs.jij_data, jij_crystal(wc), env_cutoff,
                               {"workflow_uuid": wc.uuid, "workflow": wc.process_label, "workflow_label": wc.label,
                                "charge_error": jij_charge_error(wc)},
                               workflow=wc)


#: |charge neutrality| (electrons per cell) above which a J_ij run's potential is not consistent with its solver
#: (measured: bcc Fe 1e-4 isotropic, 0.03 with SOC; the reference archive's isotropic bcc Fe 0.12 — its J_ij
#: run used another k-mesh than its SCF; a FePt cell's one-shot SOC runs 2.5)
MAX_CHARGE_ERROR = 0.5


def jij_charge_error(wc: Any) -> float | None:
    """Largest |charge neutrality| (electrons per cell) of the KKRhost runs of a ``kkr_jij_wc``; None when no
    run reports it. A J_ij run is one step on the host's potential: with the solver the host converged with
    it is ≈ 0; switched to the Chebyshev solver for SOC it is what that solver makes of the potential —
    0.03 e for bcc Fe here, 2.5 e for a FePt cell (Pt's 5d), where the J_ij are then not to be trusted."""
    errors = []
    for calc in wc.called:
        if calc.process_label == "KkrCalculation" and "output_parameters" in calc.outputs:
            value = (calc.outputs.output_parameters.get_dict().get("convergence_group") or {}).get(
                "charge_neutrality")
            if value is not None:
                errors.append(abs(float(value)))
    return max(errors) if errors else None


def jij_crystal(wc: Any) -> Any:
    """The whole crystal of a ``kkr_jij_wc`` (StructureData), found through the provenance of its host.

    Its ``structure_jij_sites`` output holds only the sites with J_ij — the non-magnetic atoms (Cu in
    L1₂ Cu₃Fe, Pt in FePt) are missing there, and the rows' i and j count the sites of the whole crystal.
    The output is the fallback when the provenance is not at hand (an archive exported without it)."""
    try:
        from aiida_kkr.tools.find_parent import find_parent_structure

        crystal, _ = find_parent_structure(wc.inputs.remote_data)
    except Exception:  # noqa: BLE001 - any failure to walk the provenance: use the output
        return wc.outputs.structure_jij_sites
    reduced = wc.outputs.structure_jij_sites
    full = np.array([s.position for s in crystal.sites], float).reshape(-1, 3)
    ok = np.allclose(np.asarray(crystal.cell, float), np.asarray(reduced.cell, float), atol=1e-6) and all(
        np.min(np.linalg.norm(full - np.asarray(s.position, float), axis=1)) < SAME_SITE for s in reduced.sites)
    return crystal if ok else reduced


def jij_workflows() -> list[Any]:
    """Every finished-ok Jij workflow node of the loaded profile (oldest first)."""
    from aiida import orm

    qb = orm.QueryBuilder().append(orm.WorkflowNode, filters={"attributes.process_label": {"in": list(JIJ_WORKFLOWS)},
                                                              "attributes.exit_status": 0},
                                   project="*", tag="wc")
    qb.order_by({"wc": {"ctime": "asc"}})
    return [n for (n,) in qb.iterall()]


@contextmanager
def archive_profile(path: str | Path) -> Iterator[None]:
    """A read-only AiiDA profile on an archive file, for the duration of the ``with`` block.

    Nothing is imported into the user's profile. An archive of an older format is migrated into a
    temporary copy first (aiida-core's own migration).
    """
    from aiida.common.exceptions import CorruptStorage, UnreachableStorage
    from aiida.manage import get_manager
    from aiida.storage.sqlite_zip.backend import SqliteZipBackend
    from aiida.tools.archive.abstract import get_format

    path = Path(path)
    if not path.is_file():
        raise InputError("ARCHIVE", str(path), reason="no such file")
    fmt = get_format()
    try:
        version = fmt.read_version(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read means: not an archive
        raise InputError("ARCHIVE", str(path), reason=f"not an AiiDA archive ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="mlkkr-archive-") as tmp:
        target = path
        if version != fmt.latest_version:
            target = Path(tmp) / "migrated.aiida"
            try:
                fmt.migrate(path, target, fmt.latest_version)
            except Exception as exc:  # noqa: BLE001 - any failure to migrate: an archive we cannot use
                raise InputError("ARCHIVE", str(path), reason=f"cannot migrate the archive from version "
                                 f"{version} ({exc})") from None
        manager = get_manager()
        previous = manager.get_profile()
        from aiida import orm

        broken = (CorruptStorage, UnreachableStorage, zipfile.BadZipFile, sqlite3.DatabaseError, EOFError)
        try:
            manager.load_profile(SqliteZipBackend.create_profile(os.fspath(target)), allow_switch=True)
            manager.get_profile_storage()
            orm.QueryBuilder().append(orm.Node).count()  # the database is opened lazily: read it now
        except broken as exc:
            _restore(manager, previous)
            raise InputError("ARCHIVE", str(path), reason=f"a corrupt or incomplete archive ({exc})") from None
        try:
            yield
        except broken as exc:  # a damaged member found while reading (a file of the repository, say)
            raise InputError("ARCHIVE", str(path), reason=f"a corrupt archive ({type(exc).__name__}: {exc})") from None
        finally:  # back to the user's profile (or none), also after an error
            _restore(manager, previous)


def _restore(manager: Any, previous: Any) -> None:
    """Back to the profile that was loaded before (or none)."""
    if previous is None:
        manager.unload_profile()
    else:
        manager.load_profile(previous, allow_switch=True)
