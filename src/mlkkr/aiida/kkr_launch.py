"""Submit real JuKKR work: host SCF, impurity embedding, Jij — the tasks behind ``mlkkr run kkr``, the KKR
launcher app and the notebooks (one code path for all three).

Each function checks everything first (:mod:`mlkkr.aiida.kkr`: structure, codes, settings, host),
submits to the daemon (:func:`mlkkr.aiida.launch.launch`), labels the process and adds it to the
launcher's Group; a host SCF is marked so that, once converged, it joins the hosts offered for reuse
(:func:`mlkkr.aiida.kkr_results.converged_hosts`).

The codes default to the ones every profile has (``voronoi@localhost``, ``kkrhost@localhost``,
``kkrimp@localhost``: :mod:`mlkkr.aiida.jukkr_codes`); pass others (an HPC computer's) by label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiida import orm

from mlkkr.aiida import kkr
from mlkkr.aiida.kkr_results import mark_host
from mlkkr.errors import InputError

#: the group every process the KKR launcher (and ``mlkkr run kkr``) starts is added to
RESULTS_GROUP = "mlkkr/kkr-launcher"
DEFAULT_CODES = {"voronoi": "voronoi@localhost", "kkr": "kkrhost@localhost", "kkrimp": "kkrimp@localhost"}
#: structure files users may upload: formats ase reads, and at most this many bytes
MAX_STRUCTURE_BYTES = 2 * 1024 * 1024


def examples() -> dict[str, Any]:
    """Example crystals (ase.Atoms, primitive cells) whose defaults converge: fcc Cu and bcc Fe."""
    from ase.build import bulk

    return {"fcc-Cu": bulk("Cu", "fcc", a=3.61), "bcc-Fe": bulk("Fe", "bcc", a=2.87)}


def structure_from(spec: str | orm.StructureData | Any) -> orm.StructureData:
    """A StructureData from an example name, a structure file (CIF, xyz, POSCAR … as ase reads), a PK/UUID
    of a StructureData, an ase.Atoms or a StructureData."""
    if isinstance(spec, orm.StructureData):
        return spec
    if hasattr(spec, "get_positions"):
        return orm.StructureData(ase=spec)
    text = str(spec)
    if text in examples():
        return orm.StructureData(ase=examples()[text])
    path = Path(text).expanduser()
    if path.is_file():
        if path.stat().st_size > MAX_STRUCTURE_BYTES:
            raise InputError("structure", text, reason=f"the file is larger than {MAX_STRUCTURE_BYTES // 1024} KiB")
        from ase.io import read

        try:
            atoms = read(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure: not a structure ase can read
            raise InputError("structure", text, reason=f"not a structure file ase can read ({exc})") from None
        return orm.StructureData(ase=atoms)
    try:
        node = orm.load_node(text)
    except Exception:  # noqa: BLE001 - NotExistent, MultipleObjects, bad identifier
        node = None
    if not isinstance(node, orm.StructureData):
        raise InputError("structure", text, allowed=f"{', '.join(examples())}, a structure file, or the PK/UUID "
                         "of a StructureData")
    return node


def load_host(host: Any) -> orm.Node:
    """The host node from a PK/UUID or node; InputError naming ``host`` otherwise."""
    if isinstance(host, orm.Node):
        return host
    try:
        return orm.load_node(host)
    except Exception:  # noqa: BLE001
        raise InputError("host", host, reason="no such node; list converged hosts with `mlkkr run kkr hosts`") from None


def record(node: orm.ProcessNode, task: str, backend: str = "jukkr") -> orm.ProcessNode:
    """Tag a process the launcher (or ``mlkkr run kkr``) started and add it to :data:`RESULTS_GROUP`."""
    node.base.extras.set_many({"mlkkr_app": "kkr-launcher", "mlkkr_task": task, "mlkkr_backend": backend})
    group, _ = orm.Group.collection.get_or_create(RESULTS_GROUP)
    group.add_nodes([node])
    return node


def submit_host(structure: Any, settings: kkr.HostSettings | None = None, *, voronoi: Any = None, kkr_code: Any = None,
                options: dict[str, Any] | None = None, label: str = "", wait: bool = False) -> orm.ProcessNode:
    """Check and submit a host SCF (``kkr_scf_wc``); returns its node."""
    from mlkkr.aiida.launch import launch

    builder = kkr.host_scf_builder(structure_from(structure), voronoi or DEFAULT_CODES["voronoi"],
                                   kkr_code or DEFAULT_CODES["kkr"], settings=settings, options=options, label=label)
    builder.metadata.description = "host SCF submitted by mlkkr (KKR launcher / mlkkr run kkr scf)"
    node = launch(builder, wait=False)
    mark_host(node)
    record(node, "scf")
    return _wait(node, wait)


def submit_impurity(host: Any, impurity: kkr.Impurity, settings: kkr.ImpuritySettings | None = None, *,
                    voronoi: Any = None, kkr_code: Any = None, kkrimp: Any = None,
                    options: dict[str, Any] | None = None, label: str = "", wait: bool = False) -> orm.ProcessNode:
    """Check and submit an impurity embedding (``kkr_imp_wc``) in a converged host; returns its node."""
    from mlkkr.aiida.launch import launch

    builder = kkr.impurity_builder(load_host(host), impurity, kkr_code or DEFAULT_CODES["kkr"],
                                   voronoi or DEFAULT_CODES["voronoi"], kkrimp or DEFAULT_CODES["kkrimp"],
                                   settings=settings, options=options, label=label)
    return _wait(record(launch(builder), "impurity"), wait)


def submit_jij(host: Any, radius: float = 5.0, *, sites_i: list[int] | None = None, sites_j: list[int] | None = None,
               soc: bool = False, kkr_code: Any = None, options: dict[str, Any] | None = None, label: str = "",
               wait: bool = False) -> orm.ProcessNode:
    """Check and submit J_ij of a converged magnetic host (``kkr_jij_wc``); returns its node.

    ``sites_i``/``sites_j``: the cell's site indices whose pairs are computed (None: every site); ``soc``: with
    spin–orbit coupling — the full tensor (J, D, S) from three magnetisation directions
    (:func:`mlkkr.aiida.kkr.jij_builder`)."""
    from mlkkr.aiida.launch import launch

    builder = kkr.jij_builder(load_host(host), kkr_code or DEFAULT_CODES["kkr"], radius=radius, sites_i=sites_i,
                              sites_j=sites_j, soc=soc, options=options, label=label)
    return _wait(record(launch(builder), "jij"), wait)


def progress(node: orm.ProcessNode) -> dict[str, Any]:
    """How far a JuKKR work chain has got: its KKR calculations done and running, and the last rms."""
    calcs = [c for c in node.called_descendants if c.process_label in ("KkrCalculation", "KkrimpCalculation")]
    done = [c for c in calcs if c.is_finished_ok and "output_parameters" in c.outputs]
    last = max(done, key=lambda c: c.ctime).outputs.output_parameters.get_dict() if done else {}
    return {"started": bool(calcs), "done": len(done), "running": len(calcs) - len(done),
            "rms": (last.get("convergence_group") or {}).get("rms")}


def progress_text(node: orm.ProcessNode) -> str:
    """:func:`progress` as the tail of a status line: ``" — 2 KKR calculation(s) done, rms 2.1e-07, 1 running"``."""
    p = progress(node)
    if not p["started"]:
        return " — starting (voronoi)"
    return (f" — {p['done']} KKR calculation(s) done" + (f", rms {p['rms']:.3g}" if p["rms"] is not None else "")
            + (f", {p['running']} running" if p["running"] else ""))


def _wait(node: orm.ProcessNode, wait: bool) -> orm.ProcessNode:
    import time

    while wait and not node.is_terminated:
        time.sleep(1)
    return node


#: the 3d and 4d transition-metal rows (the impurity series of the ML-ES dataset)
ROW_3D = ("Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn")
ROW_4D = ("Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd")


def parse_elements(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Element list from ``"Sc,Ti,Fe"``, ``"3d"``, ``"4d"``, ``"3d,4d"`` or a list; InputError names ``elements``."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s).strip() for s in text]
    out: list[str] = []
    for item in items:
        if not item:
            continue
        for el in {"3d": ROW_3D, "4d": ROW_4D}.get(item, (item,)):
            kkr.Impurity(el).z  # noqa: B018 - raises InputError for a bad symbol
            if el not in out:
                out.append(el)
    if not out:
        raise InputError("elements", text, allowed="element symbols, 3d or 4d, comma-separated")
    return out


def submit_series(host: Any, elements: list[str], *, radius: float = 2.5, site: int = 0,
                  settings: kkr.ImpuritySettings | None = None, voronoi: Any = None, kkr_code: Any = None,
                  kkrimp: Any = None, options: dict[str, Any] | None = None, max_concurrent: int = 1,
                  group: str | None = None, host_label: str | None = None, pairs: list[Any] | None = None,
                  pair_offset: int = 1, wait: bool = False) -> orm.ProcessNode:
    """Check and submit a series of impurity embeddings in one converged host
    (:class:`~mlkkr.aiida.kkr_series.KkrImpuritySeriesWorkChain`); returns its node.

    ``pairs`` ("Fe-Co", …): after the single embeddings, each pair's two clusters joined into one
    (``combine_imps_wc``), the second impurity at the ``pair_offset``-th neighbour (1: nearest); an
    element a pair needs is added to ``elements``.

    Everything is checked first: the host (converged, spin-polarised for magnetic starts), every
    element, the radius on this computer, the pairs and the settings — one builder per element is made,
    none is submitted, so bad input stores nothing.
    """
    from dataclasses import asdict

    from aiida_kkr.tools.find_parent import find_parent_structure

    from mlkkr.aiida.kkr_series import DEFAULT_GROUP, KkrImpuritySeriesWorkChain, parse_pairs
    from mlkkr.aiida.launch import launch

    settings = settings or kkr.ImpuritySettings(radius=radius)
    elements = list(elements)
    if not elements or len(set(elements)) != len(elements):
        raise InputError("elements", elements, allowed="one or more element symbols, each once")
    pair_list = parse_pairs(pairs)
    if isinstance(pair_offset, bool) or not isinstance(pair_offset, int) or not 1 <= pair_offset <= 12:
        raise InputError("pair_offset", pair_offset, allowed="an integer from 1 (nearest neighbour) to 12")
    if len(pair_list) > 64:
        raise InputError("pairs", len(pair_list), allowed="at most 64 pairs in one series")
    elements += [el for el in dict.fromkeys(x for p in pair_list for x in p) if el not in elements]
    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or not 1 <= max_concurrent <= 16:
        raise InputError("max_concurrent", max_concurrent, allowed="an integer from 1 to 16")
    host_node = load_host(host)
    codes = (kkr_code or DEFAULT_CODES["kkr"], voronoi or DEFAULT_CODES["voronoi"], kkrimp or DEFAULT_CODES["kkrimp"])
    for el in elements:  # every check of a single embedding, for each element
        kkr.impurity_builder(host_node, kkr.Impurity(el, site, radius), *codes, settings=settings, options=options)
    remote = kkr.host_remote(host_node)
    structure, _ = find_parent_structure(remote)
    builder = KkrImpuritySeriesWorkChain.get_builder()
    builder.host_remote = remote
    builder.elements = orm.List(elements)
    builder.site = orm.Int(site)
    builder.radius = orm.Float(radius)
    fields = {k: v for k, v in asdict(settings).items() if k != "radius"}
    builder.settings = orm.Dict(fields)
    builder.kkr = kkr.resolve_code(codes[0], kkr.KKRHOST, "kkr")
    builder.voronoi = kkr.resolve_code(codes[1], kkr.VORONOI, "voronoi")
    builder.kkrimp = kkr.resolve_code(codes[2], kkr.KKRIMP, "kkrimp")
    if options:
        builder.options = orm.Dict(options)
    builder.max_concurrent = orm.Int(max_concurrent)
    builder.group_label = orm.Str(group or DEFAULT_GROUP)
    builder.host_label = orm.Str(host_label or structure.get_formula())
    if pair_list:
        builder.pairs = orm.List([f"{a}-{b}" for a, b in pair_list])
        builder.pair_offset = orm.Int(pair_offset)
    builder.metadata.label = (f"{len(elements)} impurities" + (f" and {len(pair_list)} pairs" if pair_list else "")
                              + f" in {structure.get_formula()} (r = {radius} Å)")
    node = launch(builder, wait=False)
    return _wait(record(node, "impurity-series"), wait)
