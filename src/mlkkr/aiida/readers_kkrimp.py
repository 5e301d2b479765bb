"""Read KKRimp impurity potentials out of aiida-kkr results: ΔV on the radial mesh of each cluster atom.

What is read, and from where (aiida-kkr 2.x provenance)::

    kkr_imp_wc ──CALL──> kkr_imp_sub_wc ──CALL──> KkrimpCalculation (step 1 … step N)
                              │                        └─ retrieved: out_potential (or inside
                              │                           output_all.tar.gz), kkrflex_atominfo
                              └─ input host_imp_startpot ◀── neworder_potential_wf(settings_node,
                                                               parent_calc_folder = host calc's remote)

* impurity potential: ``out_potential`` of the **last** KkrimpCalculation of the sub-workflow (by
  creation time; read from the tarball if the plugin packed it). It is the latest potential of the
  self-consistency, not necessarily a converged one: :attr:`KkrimpPotential.converged` and
  :attr:`KkrimpPotential.rms` say which (from the last calculation's ``convergence_group``).
  Note: in ``kkrimp_full_wc.aiida`` (Zn in Cu, 25 iterations, rms 0.028, ``converged=False``) the
  workflow's ``converged_potential`` output is *neither converged nor the last potential*: its content
  is byte-identical to the ``out_potential`` of the **first** KKRimp step (every
  ``extract_imp_pot_sfd`` output of that archive holds the same file). This reader therefore never
  uses ``converged_potential``; :func:`identify_converged_potential` reports which step it equals.
* host potential: the file ``settings_node['pot1']`` (default ``out_potential``) of the host
  calculation whose remote folder ``neworder_potential_wf`` built the impurity start potential from
  — the same host potentials KKRimp started from; cluster atom i takes host atom
  ``settings_node['neworder'][i]``.
* a pair of impurities (``combine_imps_wc``): its start potential joins two converged single embeddings'
  potentials (``combine_potentials_cf``); the host calculation is found through the first single embedding
  (its ``impurity1_output_node``), and each cluster atom is mapped to its host site by position
  (:func:`host_sites`); ``provenance["combined_from"]`` names the two singles.
* radial mesh: ``r_i = B (e^{A (i−1)} − 1)`` (bohr) up to the muffin-tin radius, then the panel mesh
  ``XRN × ALAT`` of the host's shape function (``shapefun`` of the host calculation) — the mesh
  KKR uses; ``IRWS = IMT + MESHN`` is checked against the potential file.
* cluster: ``kkrflex_atominfo`` (positions in units of ALAT, relative to the impurity centre, and Z);
  host crystal (for the atoms around the cluster): the host StructureData (aiida-kkr's
  ``find_parent_structure``).

Potential convention (JuKKR ``rites``): the spherical part stored in the file is ``VM2Z`` — the
spherical potential *without* the nuclear Coulomb term −2Z/r (Ry, Rydberg atomic units). So
``delta_v`` here is ``V_imp − V_host`` of those stored potentials: finite at r = 0; the total
change of the potential is ``delta_v − 2 (Z_imp − Z_host)/r`` (zero difference on host atoms).
Spin-polarised files (two blocks per atom) are averaged over the two spins. Energies are converted
with masci-tools' ``RY_TO_EV`` and lengths with ``BOHR_A``.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from masci_tools.util.constants import BOHR_A, RY_TO_EV  # the conversions aiida-kkr uses

from mlkkr.data.schema import RadialEmbedding
from mlkkr.errors import InputError

#: Chemical symbols by atomic number (0: vacancy / empty cell).
SYMBOLS = ["Vac", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
           "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se",
           "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb",
           "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er",
           "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At",
           "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U"]


def _constants() -> tuple[float, float]:
    return float(RY_TO_EV), float(BOHR_A)


def _f(s: str) -> float:
    return float(s.replace("D", "E").replace("d", "e"))


#: A Fortran real (1.0D+00, -1.0E-02, 0.5): fixed-width fields may run together without blanks.
_REAL = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[EeDd][-+]?\d+)?")


def _reals(line: str) -> list[str]:
    return _REAL.findall(line)


# -- text formats (pure functions) ------------------------------------------------------------------
@dataclass
class PotentialBlock:
    """One atom (one spin) of a JuKKR potential file. Lengths in bohr, energies in Ry.

    ``v_sph``: the stored spherical potential VM2Z (without −2Z/r) on mesh points 1 … irws;
    ``v_lm``: non-spherical components {lm: values on points irws − irns … irws} (lm ≥ 2), as stored.
    """

    title: str
    z: float
    rmt: float
    alat: float
    rmtnew: float
    rws: float
    efermi: float
    vbc: float
    irws: int
    a: float
    b: float
    core: list[tuple[int, float]]
    v_sph: np.ndarray
    irns: int = 0
    lmpot: int = 1
    v_lm: dict[int, np.ndarray] = field(default_factory=dict)


def split_potential(text: str) -> list[list[str]]:
    """Lines of each block of a potential file, split where masci-tools' ``modify_potential``
    splits (a line containing ``exc:`` starts a block)."""
    from masci_tools.io.modify_potential import modify_potential

    lines = text.splitlines()
    check = modify_potential()._check_potstart
    starts = [i for i, line in enumerate(lines) if check(line)]
    if not starts:
        raise InputError("potential", None, reason="no potential block found (no line with 'exc:')")
    ends = starts[1:] + [len(lines)]
    return [lines[a:b] for a, b in zip(starts, ends, strict=True)]


def parse_block(lines: list[str]) -> PotentialBlock:
    """Parse one block (format of JuKKR's ``rites``: header, core states, VM2Z, optional lm parts)."""
    try:
        rmt, alat, rmtnew = (_f(x) for x in lines[1].split()[:3])
        z = _f(lines[2].split()[0])
        rws, efermi, vbc = (_f(x) for x in lines[3].split()[:3])
        irws = int(lines[4].split()[0])
        a, b = (_f(x) for x in lines[5].split()[:2])
        ncore = int(lines[6].split()[0])
        core = [(int(ln.split()[0]), _f(ln.split()[1])) for ln in lines[7:7 + ncore]]
        rest = lines[7 + ncore:]
        head = rest[0].split()
        irns, lmpot = 0, 1
        if len(head) == 4 and all(t.lstrip("-").isdigit() for t in head):  # full potential: NR IRNS LMPOT ISAVE
            nr, irns, lmpot = int(head[0]), int(head[1]), int(head[2])
            if nr != irws:
                raise ValueError(f"NR {nr} != IRWS {irws}")
            rest = rest[1:]
        nums: list[str] = []
        pos = 0
        while len(nums) < irws:
            nums += _reals(rest[pos])
            pos += 1
        v_sph = np.array([_f(x) for x in nums[:irws]])
        v_lm: dict[int, np.ndarray] = {}
        n_ns = irns + 1
        while irns and pos < len(rest):
            tok = rest[pos].split()
            pos += 1
            if not tok:
                continue
            lm = int(tok[0])
            if lm == 1:  # end marker
                break
            vals: list[str] = []
            while len(vals) < n_ns:
                vals += _reals(rest[pos])
                pos += 1
            v_lm[lm] = np.array([_f(x) for x in vals[:n_ns]])
    except (IndexError, ValueError) as exc:
        raise InputError("potential", lines[0][:40] if lines else "",
                         reason=f"not a JuKKR potential block ({exc})") from None
    return PotentialBlock(title=lines[0].split("exc:")[0].strip(), z=z, rmt=rmt, alat=alat, rmtnew=rmtnew,
                          rws=rws, efermi=efermi, vbc=vbc, irws=irws, a=a, b=b, core=core, v_sph=v_sph,
                          irns=irns, lmpot=lmpot, v_lm=v_lm)


def parse_potential(text: str) -> list[PotentialBlock]:
    """Every block of a JuKKR potential file (atoms × spins, in file order)."""
    return [parse_block(b) for b in split_potential(text)]


def parse_shapefun_meshes(text: str) -> list[np.ndarray]:
    """The radial panel mesh XRN (units of ALAT) of every shape in a JuKKR ``shapefun`` file."""
    lines = text.splitlines()
    meshes = []
    k = 0
    while k < len(lines):
        if "NPAN" in lines[k] or "Shape number" in lines[k]:
            tok = lines[k].split()
            meshn = int(tok[1].rstrip(",").split(",")[0]) if not tok[1].isdigit() else int(tok[1])
            npan = int(tok[0])
            k += 1
            nm_tok: list[str] = []
            while len(nm_tok) < npan:
                nm_tok += lines[k].split()
                k += 1
            vals: list[float] = []
            while len(vals) < 2 * meshn:
                vals += [_f(x) for x in _reals(lines[k])]
                k += 1
            meshes.append(np.array(vals[0:2 * meshn:2]))
        else:
            k += 1
    if not meshes:
        raise InputError("shapefun", None, reason="no shape (NPAN, MESHN line) found")
    return meshes


def radial_mesh(block: PotentialBlock, xrn: np.ndarray) -> np.ndarray:
    """KKR radial mesh (bohr) of an atom: log mesh to the muffin tin, then the shape-function panels."""
    meshn = len(xrn)
    imt = block.irws - meshn
    if imt < 2:
        raise InputError("shapefun", meshn, reason=f"MESHN {meshn} does not fit IRWS {block.irws}")
    r_log = block.b * (np.exp(block.a * np.arange(imt)) - 1.0)
    r = np.concatenate([r_log, np.asarray(xrn) * block.alat])
    if abs(r_log[-1] - block.rmt) > 1e-3 * block.rmt or abs(r[imt] - block.rmt) > 1e-3 * block.rmt:
        raise InputError("shapefun", None, reason=f"mesh does not meet the muffin-tin radius {block.rmt:.5f} bohr "
                                                  f"(log mesh ends at {r_log[-1]:.5f}, panels start at {r[imt]:.5f})")
    return r


def parse_atominfo(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``kkrflex_atominfo``: cluster positions (units of ALAT) and nuclear charges Z."""
    rows = []
    for line in text.splitlines():
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        if len(tok) >= 4:
            try:
                rows.append([_f(t) for t in tok[:4]])
            except ValueError:
                continue
    if not rows:
        raise InputError("kkrflex_atominfo", None, reason="no atom rows found")
    arr = np.array(rows)
    return arr[:, :3], arr[:, 3]


# -- the record ------------------------------------------------------------------------------------
@dataclass
class KkrimpPotential:
    """ΔV of a KKRimp impurity cluster on the radial mesh of each of its atoms.

    species, z: cluster atoms (element symbols, nuclear charges); host_species, host_z: the host atom
    each replaces. positions: (n, 3) Å, relative to the impurity centre, host's Cartesian frame.
    r: radial mesh per atom (Å). v_imp_ry, v_host_ry: stored spherical potentials VM2Z (Ry, without
    the nuclear −2Z/r); delta_v_ry = v_imp_ry − v_host_ry. host_cell (3, 3) Å (rows), host_basis
    (k, 3) Å and host_basis_species: the host crystal around the cluster. converged, rms: state of the
    KKRimp self-consistency for this potential. provenance: UUIDs of the nodes read.
    """

    species: list[str]
    z: np.ndarray
    host_species: list[str]
    host_z: np.ndarray
    positions: np.ndarray
    r: list[np.ndarray]
    v_imp_ry: list[np.ndarray]
    v_host_ry: list[np.ndarray]
    host_cell: np.ndarray
    host_basis: np.ndarray
    host_basis_species: list[str]
    converged: bool
    rms: float
    alat_bohr: float
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return len(self.species)

    @property
    def delta_v_ry(self) -> list[np.ndarray]:
        """V_imp − V_host per atom (Ry), the stored potentials (nuclear term excluded)."""
        return [a - b for a, b in zip(self.v_imp_ry, self.v_host_ry, strict=True)]

    @property
    def delta_v_ev(self) -> list[np.ndarray]:
        ry, _ = _constants()
        return [d * ry for d in self.delta_v_ry]

    @property
    def defects(self) -> np.ndarray:
        """Indices of cluster atoms whose nuclear charge differs from the host atom they replace."""
        return np.flatnonzero(np.abs(self.z - self.host_z) > 1e-6)

    def grid(self, atoms: Sequence[int] | None = None, stride: int = 1, r_min: float = 0.0,
             r_max: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shells of the radial meshes: centres (m, 3) Å, radii (m,) Å, ΔV (m,) eV, atom index (m,).

        ``stride`` keeps every stride-th mesh point; ``r_min``, ``r_max`` (Å) drop points closer or
        farther. Repeated radii (panel boundaries of the KKR mesh) are kept once.
        """
        atoms = range(self.n_atoms) if atoms is None else atoms
        c, rr, dv, idx = [], [], [], []
        dev = self.delta_v_ev
        for i in atoms:
            r = self.r[i]
            keep = np.ones(len(r), bool)
            keep[1:] = np.diff(r) > 1e-12
            sel = np.flatnonzero(keep & (r >= r_min))[::stride]
            if r_max is not None:
                sel = sel[r[sel] <= r_max]
            c.append(np.repeat(self.positions[i][None], len(sel), axis=0))
            rr.append(r[sel])
            dv.append(dev[i][sel])
            idx.append(np.full(len(sel), i))
        return np.vstack(c), np.concatenate(rr), np.concatenate(dv), np.concatenate(idx)

    def environment(self, reach: float) -> tuple[np.ndarray, list[str]]:
        """Cluster atoms plus the host atoms within ``reach`` Å of any cluster atom that the cluster
        does not replace: positions (Å) and species."""
        from scipy.spatial import cKDTree

        inv = np.linalg.inv(self.host_cell)
        span = np.abs(self.positions @ inv).max() + reach * np.linalg.norm(inv, axis=0).max() + 2
        n = int(np.ceil(span))
        g = np.arange(-n, n + 1)
        frac = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        centre = self.provenance.get("centre_basis_position", np.zeros(3))
        pts, sp = [], []
        for b, s in zip(self.host_basis, self.host_basis_species, strict=True):
            p = frac @ self.host_cell + (b - centre)
            near = cKDTree(self.positions).query(p, distance_upper_bound=reach)[0] <= reach
            pts.append(p[near])
            sp += [s] * int(near.sum())
        hp = np.vstack(pts)
        taken = cKDTree(self.positions).query(hp)[0] < 1e-3
        hp = hp[~taken]
        sp = [s for s, t in zip(sp, taken, strict=True) if not t]
        return np.vstack([self.positions, hp]), list(self.species) + sp


def with_reference(imp: KkrimpPotential, ref: KkrimpPotential) -> KkrimpPotential:
    """``imp`` with its host potential replaced by the potentials of ``ref`` (e.g. a host-in-host
    KKRimp run on the same cluster): ΔV = V_imp − V_ref, atom by atom.

    Useful because ΔV against the KKRhost potential also holds what differs between the KKRhost and
    KKRimp runs themselves: in the reference archives a Cu-in-Cu KKRimp run differs from its host by
    −3.2 Ry at the nucleus, up to +2.4 Ry in the core region and −0.08 Ry at the muffin-tin radius
    (docs/ml-es.md). InputError unless both have the same cluster positions, host and radial meshes.
    """
    if imp.n_atoms != ref.n_atoms or not np.allclose(imp.positions, ref.positions, atol=1e-6):
        raise InputError("reference", ref.provenance.get("workflow_uuid"), reason="the clusters differ")
    if imp.host_species != ref.host_species:
        raise InputError("reference", ref.host_species, reason=f"host atoms differ from {imp.host_species}")
    for i in range(imp.n_atoms):
        if len(imp.r[i]) != len(ref.r[i]) or not np.allclose(imp.r[i], ref.r[i], rtol=1e-9, atol=1e-12):
            raise InputError("reference", i, reason=f"atom {i}: the radial meshes differ")
    prov = {**imp.provenance, "reference_workflow_uuid": ref.provenance.get("workflow_uuid"),
            "reference_kkrimp_calculation_uuid": ref.provenance.get("kkrimp_calculation_uuid")}
    return KkrimpPotential(
        species=imp.species, z=imp.z, host_species=imp.host_species, host_z=imp.host_z, positions=imp.positions,
        r=imp.r, v_imp_ry=imp.v_imp_ry, v_host_ry=list(ref.v_imp_ry), host_cell=imp.host_cell,
        host_basis=imp.host_basis, host_basis_species=imp.host_basis_species, converged=imp.converged,
        rms=imp.rms, alat_bohr=imp.alat_bohr, provenance=prov)


# -- AiiDA side ------------------------------------------------------------------------------------
def _load(node: Any) -> Any:
    from aiida import orm

    if isinstance(node, orm.Node):
        return node
    try:
        return orm.load_node(node)
    except Exception as exc:  # noqa: BLE001 - aiida raises several kinds here
        raise InputError("node", node, reason=f"cannot load the AiiDA node: {exc}") from None


def _sub_workflow(node: Any) -> Any:
    """The kkr_imp_sub_wc of a kkr_imp_wc, a kkr_imp_sub_wc, or the caller of a KkrimpCalculation."""
    from aiida.orm import CalcJobNode, WorkflowNode

    label = node.process_label or ""
    if label == "kkr_imp_sub_wc":
        return node
    if label in ("kkr_imp_wc", "combine_imps_wc"):
        subs = [c for c in node.called if (c.process_label or "") == "kkr_imp_sub_wc"]
        if not subs:
            raise InputError("node", node.pk, reason=f"this {label} called no kkr_imp_sub_wc")
        return sorted(subs, key=lambda c: c.ctime)[-1]
    if isinstance(node, CalcJobNode) and label == "KkrimpCalculation":
        caller = node.caller
        if caller is None or (caller.process_label or "") != "kkr_imp_sub_wc":
            raise InputError("node", node.pk, reason="this KkrimpCalculation was not run by kkr_imp_sub_wc: "
                                                     "its host potential cannot be traced")
        return caller
    kind = label or type(node).__name__
    if not isinstance(node, WorkflowNode | CalcJobNode):
        kind = type(node).__name__
    raise InputError("node", f"{node.pk} ({kind})",
                     allowed=["kkr_imp_wc", "combine_imps_wc", "kkr_imp_sub_wc", "KkrimpCalculation"])


def kkrimp_calculations(sub: Any) -> list[Any]:
    """The KkrimpCalculations of a kkr_imp_sub_wc, in order of creation (step 1 first)."""
    calcs = [c for c in sub.called if (c.process_label or "") == "KkrimpCalculation"]
    if not calcs:
        raise InputError("node", sub.pk, reason="the kkr_imp_sub_wc ran no KkrimpCalculation")
    return sorted(calcs, key=lambda c: c.ctime)


def retrieved_text(retrieved: Any, name: str) -> str:
    """A file of a retrieved folder, taken from ``output_all.tar.gz`` if the plugin packed it."""
    from aiida_kkr.calculations.kkrimp import KkrimpCalculation

    names = retrieved.base.repository.list_object_names()
    if name in names:
        return retrieved.base.repository.get_object_content(name)
    tar_name = KkrimpCalculation._FILENAME_TAR
    if tar_name in names:
        with retrieved.base.repository.open(tar_name, "rb") as fh, tarfile.open(fileobj=io.BytesIO(fh.read())) as tf:
            for member in tf.getmembers():
                if member.name.split("/")[-1] == name:
                    return tf.extractfile(member).read().decode()
    raise InputError("retrieved", retrieved.pk, reason=f"no file {name!r} in the retrieved folder (or its tarball)")


def provenance_text(calc: Any, name: str, max_depth: int = 100) -> str:
    """A file retrieved by ``calc`` or, when it did not retrieve it, by the calculation whose remote folder
    it started from (``parent_folder``), and so on up the chain.

    aiida-kkr's KkrCalculation copies ``shapefun`` from its parent's remote folder without retrieving it:
    the file lies in the retrieved folder of the VoronoiCalculation at the start of the chain.
    """
    node, seen = calc, []
    for _ in range(max_depth):
        seen.append(node.pk)
        if "retrieved" in node.outputs:
            try:
                return retrieved_text(node.outputs.retrieved, name)
            except InputError:
                pass
        parent = node.inputs.parent_folder if "parent_folder" in node.inputs else None
        if parent is None or parent.creator is None:
            break
        node = parent.creator
    raise InputError("retrieved", calc.pk, reason=f"no file {name!r} retrieved by calculation {calc.pk} or by "
                     f"the calculations it started from ({', '.join(map(str, seen))})")


def identify_converged_potential(node: Any) -> dict[str, Any]:
    """Which KKRimp step's ``out_potential`` a kkr_imp_wc's ``converged_potential`` output equals.

    Returns {"equals_step": k (1-based) or None, "n_steps": N, "is_last": bool, "workflow_converged": …}.
    """
    node = _load(node)
    if "converged_potential" not in node.outputs:
        raise InputError("node", node.pk, reason="this workflow has no converged_potential output")
    sfd = node.outputs.converged_potential
    content = sfd.get_content()
    calcs = kkrimp_calculations(_sub_workflow(node))
    step = None
    for k, c in enumerate(calcs, start=1):
        if retrieved_text(c.outputs.retrieved, "out_potential") == content:
            step = k
    info = node.outputs.workflow_info.get_dict() if "workflow_info" in node.outputs else {}
    return {"equals_step": step, "n_steps": len(calcs), "is_last": step == len(calcs),
            "workflow_converged": info.get("converged"), "converged_potential_uuid": sfd.uuid}


def _producer(output: Any) -> Any:
    """The process whose result ``output`` is: its creator, or — when a calcfunction made it (a work chain's
    ``workflow_info``) — the work chain that called that calcfunction."""
    from aiida.orm import CalcFunctionNode

    node = output.creator
    while isinstance(node, CalcFunctionNode) and node.caller is not None:
        node = node.caller
    return node


def _host_trace(sub: Any, depth: int = 0) -> dict[str, Any]:
    """Where the host potentials of a kkr_imp_sub_wc's cluster come from.

    A single embedding (kkr_imp_wc): its start potential was made by ``neworder_potential_wf`` from the
    host calculation's remote folder, and ``settings_node['neworder']`` maps cluster atoms to host atoms.
    A combined cluster (``combine_imps_wc``): the start potential joins the two single embeddings'
    potentials (``combine_potentials_cf``); the host is the first embedding's, and each atom's host site
    is found from its position (``neworder`` None). Returns host_calc, potential_file, neworder,
    centre_site (the host site at the cluster's origin) and combined_from (UUIDs of the embeddings).
    """
    if depth > 8:
        raise InputError("node", sub.pk, reason="combined impurities nested deeper than 8 levels")
    creator = sub.inputs.host_imp_startpot.creator
    caller = sub.caller
    if creator is not None and "settings_node" in creator.inputs:
        settings = creator.inputs.settings_node.get_dict()
        impinfo = sub.inputs.impurity_info.get_dict() if "impurity_info" in sub.inputs else {}
        return {"host_calc": creator.inputs.parent_calc_folder.creator,
                "potential_file": settings.get("pot1") or "out_potential", "neworder": settings.get("neworder", []),
                "centre_site": int(impinfo.get("ilayer_center", 0)), "combined_from": None}
    if caller is not None and (caller.process_label or "") == "combine_imps_wc":
        parts = [_producer(caller.inputs[f"impurity{k}_output_node"]) for k in (1, 2)]
        if any(p is None for p in parts):
            raise InputError("node", caller.pk, reason="an impurity input of this combine_imps_wc has no creator")
        first = _host_trace(_sub_workflow(parts[0]), depth + 1)
        return {**first, "neworder": None, "combined_from": [p.uuid for p in parts]}
    raise InputError("node", sub.pk, reason="the impurity start potential was made neither by neworder_potential_wf "
                                            "nor by combine_imps_wc: the host potential cannot be traced")


def host_sites(positions: np.ndarray, cell: np.ndarray, basis: np.ndarray, centre: np.ndarray,
               tol: float = 1e-3) -> list[int]:
    """The host basis site of each cluster atom: ``centre + position − basis[k]`` is a lattice vector
    (positions, cell rows, basis in Å). An atom on no host site is an error (an interstitial cluster)."""
    inv = np.linalg.inv(cell)
    out = []
    for i, p in enumerate(np.asarray(positions, float)):
        frac = (centre + p - basis) @ inv
        off = np.abs(frac - np.round(frac)).max(axis=1) * np.linalg.norm(cell, axis=1).max()
        k = int(np.argmin(off))
        if off[k] > tol:
            raise InputError("kkrflex_atominfo", i, reason=f"cluster atom {i} at {np.round(p, 4).tolist()} Å is on "
                                                           "no site of the host crystal")
        out.append(k)
    return out


def read_kkrimp_potential(node: Any) -> KkrimpPotential:
    """ΔV of the last KKRimp potential of a kkr_imp_wc / combine_imps_wc / kkr_imp_sub_wc / KkrimpCalculation.

    ``node``: a node, PK or UUID, in the loaded AiiDA profile. See the module docstring for what
    is read from where.
    """
    from aiida_kkr.calculations.kkrimp import KkrimpCalculation
    from aiida_kkr.tools.find_parent import find_parent_structure

    ry, bohr = _constants()
    node = _load(node)
    sub = _sub_workflow(node)
    calcs = kkrimp_calculations(sub)
    last = calcs[-1] if (node.process_label or "") != "KkrimpCalculation" else node
    retrieved = last.outputs.retrieved
    pot_text = retrieved_text(retrieved, KkrimpCalculation._OUT_POTENTIAL)
    atominfo = retrieved_text(retrieved, KkrimpCalculation._KKRFLEX_ATOMINFO)
    out_params = last.outputs.output_parameters.get_dict()
    nspin = int(out_params.get("nspin", 1))
    conv = out_params.get("convergence_group", {})

    # host potential and the cluster -> host atom map
    trace = _host_trace(sub)
    host_calc, pot_file = trace["host_calc"], trace["potential_file"]
    host_text = retrieved_text(host_calc.outputs.retrieved, pot_file)
    shapefun = provenance_text(host_calc, "shapefun")

    imp_blocks = parse_potential(pot_text)
    host_blocks = parse_potential(host_text)
    xyz_alat, zs = parse_atominfo(atominfo)
    n_atoms = len(zs)
    if len(imp_blocks) != nspin * n_atoms:
        raise InputError("out_potential", len(imp_blocks),
                         reason=f"{len(imp_blocks)} blocks for {n_atoms} atoms × nspin {nspin}")
    structure, _ = find_parent_structure(host_calc)
    cell = np.array(structure.cell, float)
    basis = np.array([s.position for s in structure.sites], float)
    centre = basis[trace["centre_site"]] if len(basis) else np.zeros(3)
    if trace["neworder"] is None:  # a combined cluster: each atom's host site from its position
        neworder = host_sites(xyz_alat * imp_blocks[0].alat * bohr, cell, basis, centre)
    else:
        neworder = [int(k) for k in trace["neworder"]] or list(range(n_atoms))
    if len(neworder) != n_atoms:
        raise InputError("settings_node", len(neworder),
                         reason=f"neworder has {len(neworder)} entries for a cluster of {n_atoms}")
    n_host = len(host_blocks) // nspin
    meshes = parse_shapefun_meshes(shapefun)
    shapes = _host_shapes(host_calc, n_host, len(meshes))

    def spin_avg(blocks: list[PotentialBlock], k: int) -> tuple[PotentialBlock, np.ndarray]:
        bl = blocks[nspin * k:nspin * (k + 1)]
        return bl[0], np.mean([b.v_sph for b in bl], axis=0)

    r_list, v_imp, v_host, host_z = [], [], [], []
    alat = imp_blocks[0].alat
    for i in range(n_atoms):
        bi, vi = spin_avg(imp_blocks, i)
        bh, vh = spin_avg(host_blocks, neworder[i])
        if bi.irws != bh.irws or abs(bi.a - bh.a) > 1e-10 or abs(bi.b - bh.b) > 1e-10 * max(bh.b, 1e-30):
            raise InputError("out_potential", i, reason=f"atom {i}: impurity and host radial meshes differ "
                                                        f"(IRWS {bi.irws}/{bh.irws}, A, B)")
        r_list.append(radial_mesh(bi, meshes[shapes[neworder[i]]]) * bohr)
        v_imp.append(vi)
        v_host.append(vh)
        host_z.append(bh.z)
    host_z_arr = np.array(host_z)
    z_pot = np.array([imp_blocks[nspin * i].z for i in range(n_atoms)])
    if np.any(np.abs(z_pot - zs) > 1e-6):
        raise InputError("kkrflex_atominfo", zs.tolist(), reason=f"Z differs from the potential file {z_pot.tolist()}")

    kinds = {k.name: k for k in structure.kinds}
    basis_species = [kinds[s.kind_name].symbols[0] if len(kinds[s.kind_name].symbols) == 1 else s.kind_name
                     for s in structure.sites]
    impinfo = sub.inputs.impurity_info.get_dict() if "impurity_info" in sub.inputs else {}
    impinfo = {k: v for k, v in impinfo.items() if k != "imp_cls"}  # the cluster itself is in `positions`
    prov = {"source": "aiida-kkr", "workflow_uuid": node.uuid, "sub_workflow_uuid": sub.uuid,
            "kkrimp_calculation_uuid": last.uuid, "kkrimp_step": calcs.index(last) + 1 if last in calcs else None,
            "n_kkrimp_steps": len(calcs), "host_calculation_uuid": host_calc.uuid,
            "host_structure_uuid": structure.uuid, "host_potential_file": pot_file,
            "combined_from": trace["combined_from"],
            "impurity_info": impinfo, "centre_basis_position": centre, "nspin": nspin,
            "potential_convention": "VM2Z: spherical potential without the nuclear -2Z/r, Ry"}
    return KkrimpPotential(
        species=[SYMBOLS[int(round(z))] for z in zs], z=zs, host_species=[SYMBOLS[int(round(z))] for z in host_z_arr],
        host_z=host_z_arr, positions=xyz_alat * alat * bohr, r=r_list, v_imp_ry=v_imp, v_host_ry=v_host,
        host_cell=cell, host_basis=basis, host_basis_species=basis_species,
        converged=bool(conv.get("calculation_converged", False)), rms=float(conv.get("rms", np.nan)),
        alat_bohr=alat, provenance=prov)


def _host_shapes(host_calc: Any, n_host: int, n_shapes: int) -> list[int]:
    """Shape index (0-based) of each host atom: identity when there are as many shapes as atoms,
    else the <SHAPE> column of the host inputcard."""
    if n_shapes == n_host:
        return list(range(n_host))
    try:
        card = retrieved_text(host_calc.outputs.retrieved, "inputcard").splitlines()
        k = next(i for i, line in enumerate(card) if "<SHAPE>" in line)
        col = card[k].find("<SHAPE>")
        return [int(card[k + 1 + i][col:].split()[0]) - 1 for i in range(n_host)]
    except (StopIteration, IndexError, ValueError, InputError):
        if n_shapes == 1:
            return [0] * n_host
        raise InputError("shapefun", n_shapes, reason=f"{n_shapes} shapes for {n_host} host atoms and no "
                                                      "<SHAPE> map in the host inputcard") from None


def workflow_wall_seconds(node: Any) -> float:
    """Wall time of a work chain: from its creation to the last change of any process it called (its own
    mtime also moves when extras are set later)."""
    ends = [d.mtime for d in getattr(node, "called_descendants", [])] or [node.mtime]
    return (max(ends) - node.ctime).total_seconds()


def radial_embedding(node: Any, host: str | None = None) -> RadialEmbedding:
    """The last KKRimp potential of ``node`` (see :func:`read_kkrimp_potential`) as a
    :class:`~mlkkr.data.RadialEmbedding` (ΔV in eV on each atom's mesh in Å, nuclear term excluded).

    ``host``: the host label stored in the record (default: the host crystal's formula, e.g. "Cu").
    """
    pot = read_kkrimp_potential(node)
    calcs = kkrimp_calculations(_sub_workflow(_load(node)))
    iterations = 0
    for c in calcs:
        if "output_parameters" in c.outputs:
            conv = c.outputs.output_parameters.get_dict().get("convergence_group", {})
            iterations += int(conv.get("number_of_iterations", 0) or 0)
    if host is None:
        counts: dict[str, int] = {}
        for s in pot.host_basis_species:
            counts[s] = counts.get(s, 0) + 1
        host = "".join(f"{s}{n if n > 1 else ''}" for s, n in sorted(counts.items()))
    prov = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in pot.provenance.items()}
    # wall time of the whole embedding (voronoi, KKRhost write-out, KKRimp), as the user waited for it
    prov["workflow_wall_s"] = round(workflow_wall_seconds(_load(node)), 3)
    return RadialEmbedding(host=host, species=pot.species, z=pot.z, host_species=pot.host_species,
                           host_z=pot.host_z, positions=pot.positions, r=pot.r, delta_v=pot.delta_v_ev,
                           cell=pot.host_cell, converged=pot.converged, rms=pot.rms, iterations=iterations,
                           provenance=prov)
