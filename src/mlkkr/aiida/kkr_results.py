"""What a KKR user looks at after a JuKKR run through aiida-kkr, as plain data (no widgets, no figures).

* :func:`host_summary` — ``kkr_scf_wc``: convergence (rms per KKRhost iteration, over every
  KkrCalculation of the SCF in order), Fermi energy, total energy, spin moment and charge per site, and
  the DOS when the work chain computed one (``check_dos``).
* :func:`impurity_summary` — ``kkr_imp_wc``: convergence (rms per KKRimp iteration), spin moment and
  charge of the impurity, and ΔV(r) of the impurity atom on its radial mesh (V_imp − V_host of the
  stored spherical potentials, :mod:`mlkkr.aiida.readers_kkrimp`).
* :func:`jij_summary` — ``kkr_jij_wc``: J_ij of every pair with its distance, and the shells.

Units as the codes give them, converted once here: energies Ry and eV (masci-tools' ``RY_TO_EV``), J in
meV (aiida-kkr's sign: positive is ferromagnetic), lengths Å, moments μB.

The Group :data:`mlkkr.aiida.kkr.HOSTS_GROUP` holds the converged hosts submitted by mlkkr (the KKR
launcher, ``mlkkr run kkr scf``, the notebooks): :func:`converged_hosts` adds every such host that has
converged since, and lists them for reuse.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from aiida import orm

from mlkkr.aiida.kkr import HOSTS_GROUP
from mlkkr.errors import InputError

HOST_ROLE = "host"


def _ry_to_ev() -> float:
    from masci_tools.util.constants import RY_TO_EV

    return float(RY_TO_EV)


def _calcs(node: orm.ProcessNode, label: str) -> list[orm.CalcJobNode]:
    found = [n for n in node.called_descendants if n.process_label == label]
    return sorted(found, key=lambda n: n.ctime)


def _rms_history(calcs: list[orm.CalcJobNode]) -> list[float]:
    rms: list[float] = []
    for calc in calcs:
        if "output_parameters" in calc.outputs:
            group = calc.outputs.output_parameters.get_dict().get("convergence_group", {})
            rms += [float(x) for x in group.get("rms_all_iterations", []) or []]
    return rms


def _expect(node: orm.ProcessNode, *labels: str) -> orm.ProcessNode:
    node = orm.load_node(node) if not isinstance(node, orm.Node) else node
    if not isinstance(node, orm.ProcessNode) or node.process_label not in labels:
        raise InputError("node", getattr(node, "pk", node), allowed=f"a {' or '.join(labels)} work chain")
    return node


def host_summary(node: orm.ProcessNode | int | str) -> dict[str, Any]:
    """The results of a host SCF (``kkr_scf_wc``), finished or not (``state`` says which)."""
    node = _expect(node, "kkr_scf_wc")
    ev = _ry_to_ev()
    calcs = _calcs(node, "KkrCalculation")
    scf = [c for c in calcs if "output_parameters" in c.outputs
           and "convergence_group" in c.outputs.output_parameters.get_dict()]  # not the DOS runs
    out = node.outputs.last_calc_out.get_dict() if "last_calc_out" in node.outputs else \
        (scf[-1].outputs.output_parameters.get_dict() if scf else {})
    structure = node.inputs.structure
    results = node.outputs.output_kkr_scf_wc_ParameterResults.get_dict() \
        if "output_kkr_scf_wc_ParameterResults" in node.outputs else {}
    magnetism = out.get("magnetism_group") or {}
    ef = out.get("fermi_energy")
    summary: dict[str, Any] = {
        "kind": "host", "pk": node.pk, "label": node.label, "formula": structure.get_formula(),
        "sites": [s.kind_name for s in structure.sites], "state": node.process_state.value if node.process_state
        else None, "finished_ok": node.is_finished_ok, "converged": results.get("convergence_reached"),
        "criterion": node.inputs.wf_parameters.get_dict().get("convergence_criterion") if "wf_parameters" in
        node.inputs else None,
        "rms": _rms_history(calcs), "n_calculations": len(calcs),
        "fermi_energy_ry": ef, "fermi_energy_ev": None if ef is None else ef * ev,
        "total_energy_ry": out.get("total_energy_Ry"), "nspin": out.get("nspin"),
        "spin_moment_per_atom": magnetism.get("spin_moment_per_atom"),
        "total_spin_moment": magnetism.get("total_spin_moment"),
        "charge_valence_per_atom": out.get("charge_valence_states_per_atom"),
        "dos": None,
    }
    if "final_dosdata_interpol" in node.outputs:
        summary["dos"] = _dos(node.outputs.final_dosdata_interpol, ef, out.get("nspin"))
    return summary


def _dos(xy: orm.XyData, ef_ry: float | None, nspin: int | None) -> dict[str, Any]:
    """DOS (states/eV) against E − E_F (eV) from aiida-kkr's interpolated DOS (XyData, one row per atom and
    spin): the total over the rows, and per spin (rows alternate spin 1, spin 2) when spin-polarised."""
    _, x, _ = xy.get_x()
    rows = next((np.atleast_2d(np.asarray(y, float)) for name, y, _ in xy.get_y() if name.endswith("dos tot")),
                None)
    energy = np.atleast_2d(np.asarray(x, float))[0]
    if rows is None:
        return {"energy_ev": energy.tolist(), "total_per_ev": [], "spin_per_ev": []}
    spin = [rows[k::2].sum(axis=0).tolist() for k in range(2)] if nspin == 2 and len(rows) % 2 == 0 else []
    return {"energy_ev": energy.tolist(), "total_per_ev": rows.sum(axis=0).tolist(), "spin_per_ev": spin,
            "fermi_energy_ry": ef_ry}


def impurity_summary(node: orm.ProcessNode | int | str) -> dict[str, Any]:
    """The results of an impurity embedding (``kkr_imp_wc``) or of a pair of them joined
    (``combine_imps_wc``), with ΔV(r) when it finished."""
    from mlkkr.aiida.readers_kkrimp import read_kkrimp_potential

    node = _expect(node, "kkr_imp_wc", "combine_imps_wc")
    calcs = _calcs(node, "KkrimpCalculation")
    out = node.outputs.last_calc_output_parameters.get_dict() if "last_calc_output_parameters" in node.outputs \
        else (calcs[-1].outputs.output_parameters.get_dict() if calcs and "output_parameters" in calcs[-1].outputs
              else {})
    info = node.outputs.workflow_info.get_dict() if "workflow_info" in node.outputs else {}
    subs = [c for c in node.called if c.process_label == "kkr_imp_sub_wc"]
    imp = node.inputs.impurity_info.get_dict() if "impurity_info" in node.inputs else \
        (subs[0].inputs.impurity_info.get_dict() if subs else {})  # a pair: the joined cluster's
    magnetism = out.get("magnetism_group") or {}
    summary: dict[str, Any] = {
        "kind": "impurity", "pk": node.pk, "label": node.label, "state": node.process_state.value
        if node.process_state else None, "finished_ok": node.is_finished_ok,
        "converged": info.get("converged", (out.get("convergence_group") or {}).get("calculation_converged")),
        "impurity_z": imp.get("Zimp"), "radius_angstrom": imp.get("Rcut"), "site": imp.get("ilayer_center"),
        "rms": _rms_history(calcs), "n_calculations": len(calcs),
        "spin_moment_per_atom": magnetism.get("spin_moment_per_atom"),
        "total_spin_moment": magnetism.get("total_spin_moment"),
        "charge_valence_per_atom": out.get("charge_valence_states_per_atom"),
        "total_energy_ry": out.get("total_energy_Ry"), "delta_v": None,
    }
    if node.is_finished_ok:
        pot = read_kkrimp_potential(node)
        summary["n_cluster_atoms"] = pot.n_atoms
        summary["delta_v"] = [{"species": pot.species[i], "host_species": pot.host_species[i],
                               "position_angstrom": pot.positions[i].tolist(), "r_angstrom": pot.r[i].tolist(),
                               "delta_v_ev": pot.delta_v_ev[i].tolist()} for i in range(pot.n_atoms)]
    return summary


def jij_summary(node: orm.ProcessNode | int | str) -> dict[str, Any]:
    """J_ij of a ``kkr_jij_wc`` (meV, positive: ferromagnetic) per pair and per shell of distance (Å)."""
    node = _expect(node, "kkr_jij_wc")
    summary: dict[str, Any] = {"kind": "jij", "pk": node.pk, "label": node.label,
                               "state": node.process_state.value if node.process_state else None,
                               "finished_ok": node.is_finished_ok, "pairs": [], "shells": []}
    if "jij_data" not in node.outputs:
        return summary
    data = node.outputs.jij_data
    table = np.asarray(data.get_array("Jij_expanded"), float)
    positions = np.asarray(data.get_array("positions_expanded"), float)
    distances = np.linalg.norm(positions, axis=1)
    pairs = [{"i": int(row[0]), "j": int(row[1]), "distance_angstrom": float(d), "J_meV": float(row[5])}
             for row, d in zip(table, distances, strict=True)]
    shells: dict[float, list[float]] = defaultdict(list)
    for p in pairs:
        shells[round(p["distance_angstrom"], 3)].append(p["J_meV"])
    summary["pairs"] = pairs
    summary["shells"] = [{"distance_angstrom": d, "n": len(js), "J_meV": float(np.mean(js))}
                         for d, js in sorted(shells.items())]
    return summary


SUMMARIES = {"kkr_scf_wc": host_summary, "kkr_imp_wc": impurity_summary, "combine_imps_wc": impurity_summary,
             "kkr_jij_wc": jij_summary}


def summary(node: orm.ProcessNode | int | str) -> dict[str, Any]:
    """The summary that fits the node's work chain."""
    node = orm.load_node(node) if not isinstance(node, orm.Node) else node
    if node.process_label not in SUMMARIES:
        raise InputError("node", node.pk, allowed=sorted(SUMMARIES))
    return SUMMARIES[node.process_label](node)


# --------------------------------------------------------------------------------------- host group


def mark_host(node: orm.ProcessNode) -> None:
    """Remember ``node`` (a kkr_scf_wc just submitted) as a host to offer once it has converged."""
    node.base.extras.set("mlkkr_role", HOST_ROLE)


def converged_hosts(promote: bool = True) -> list[dict[str, Any]]:
    """Converged hosts for reuse: every mlkkr host SCF that converged is added to :data:`HOSTS_GROUP`
    (first time seen); returns the group's hosts, newest first, as ``{"pk", "label", "formula", "fermi_energy_ry"}``.

    ``promote=False`` writes nothing and lists the group's hosts and the converged ones not yet in it —
    for threads other than the one that loaded the profile (a widget callback), where aiida-core's
    storage session may not write (the default user belongs to the main thread's session).
    """
    qb = orm.QueryBuilder().append(orm.WorkChainNode, filters={"attributes.process_label": "kkr_scf_wc",
                                                               "attributes.exit_status": 0,
                                                               "extras.mlkkr_role": HOST_ROLE}, project="*")
    group = None
    members = set()
    existing = orm.QueryBuilder().append(orm.Group, filters={"label": HOSTS_GROUP}).first(flat=True)
    if existing is not None:
        group = existing
        members = {n.pk for n in group.nodes}
    new = []
    for node in qb.all(flat=True):
        if node.pk in members or "output_kkr_scf_wc_ParameterResults" not in node.outputs:
            continue
        if node.outputs.output_kkr_scf_wc_ParameterResults.get_dict().get("convergence_reached"):
            new.append(node)
    if new and promote:
        group = group or orm.Group(label=HOSTS_GROUP, description="converged JuKKR hosts (kkr_scf_wc) for reuse, "
                                   "kept by mlkkr").store()
        group.add_nodes(new)
        new = []
    nodes = ([] if group is None else list(group.nodes)) + new
    hosts = []
    for node in sorted(nodes, key=lambda n: n.ctime, reverse=True):
        if not isinstance(node, orm.WorkChainNode) or node.process_label != "kkr_scf_wc":
            continue
        out = node.outputs.last_calc_out.get_dict() if "last_calc_out" in node.outputs else {}
        hosts.append({"pk": node.pk, "label": node.label, "formula": node.inputs.structure.get_formula(),
                      "fermi_energy_ry": out.get("fermi_energy"), "nspin": out.get("nspin")})
    return hosts
