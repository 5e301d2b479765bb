"""The KKR launcher's model: what the form holds, how it is checked, what is submitted, what is shown.

Two backends compute the same kinds of results:

* ``engine`` — the built-in model Green-function engine (:mod:`mlkkr.greens`) as an AiiDA job:
  :class:`~mlkkr.aiida.workflows.EngineBaseWorkChain` around an
  :class:`~mlkkr.aiida.calculations.EngineCalculation` that runs ``mlkkr engine exchange|embed`` on the
  chosen computer. The engine models a simple-cubic host, so the structure must be one (a supercell of
  a simple-cubic lattice, e.g. the examples): its nearest-neighbour distance becomes the host's lattice
  constant and each site's position, in lattice units, the impurity's lattice vector.
* ``jukkr`` — real JuKKR through aiida-kkr (:mod:`mlkkr.aiida.kkr`, submitted by
  :mod:`mlkkr.aiida.kkr_launch`, the same tasks as ``mlkkr run kkr``): the host SCF (``kkr_scf_wc`` with
  its voronoi start), then, in a converged host offered from the Group ``mlkkr/kkr-hosts``, the
  embedding of the first impurity (``kkr_imp_wc``) or J_ij (``kkr_jij_wc``). Results
  (:mod:`mlkkr.aiida.kkr_results`): convergence, E_F, moments, DOS, ΔV(r), J_ij against distance.

Every check raises :class:`~mlkkr.errors.InputError` naming the form's field (``structure``,
``impurities``, ``impurities[1].site``, ``code``, ``kgrid`` …), before anything is stored. Units: Å for
lengths, meV for exchange, eV for ΔV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlkkr.errors import InputError

BACKENDS = {"engine": "built-in Green-function engine", "jukkr": "JuKKR (aiida-kkr)"}
TASKS = {"exchange": "exchange tensors J_ij", "embed": "impurity potential ΔV"}
JUKKR_TASKS = {"scf": "host SCF (kkr_scf_wc)", "impurity": "embed an impurity (kkr_imp_wc)",
               "jij": "J_ij of the host (kkr_jij_wc)"}
HOSTS = ("ti", "metal")
#: the group every launched process is added to (publish it with the Data archive app)
RESULTS_GROUP = "mlkkr/kkr-launcher"  # kept by mlkkr.aiida.kkr_launch.record (its RESULTS_GROUP: the same)
ENGINE_PLUGIN = "mlkkr.engine"
_ON_LATTICE = 0.05  # largest deviation from a lattice point, in lattice constants


def element_choices() -> list[str]:
    """Impurity species of the built-in engine (3d magnetic ones first)."""
    from mlkkr.greens.defects import ELEMENTS

    return list(ELEMENTS)


@dataclass
class Impurity:
    """One impurity: ``element`` on site ``site`` (index into the structure's sites)."""

    element: str
    site: int | None


@dataclass
class Resources:
    """Scheduler resources of the job (aiida ``metadata.options``)."""

    num_machines: int = 1
    num_mpiprocs_per_machine: int = 1
    max_wallclock_seconds: int = 1800

    def check(self) -> None:
        for name in ("num_machines", "num_mpiprocs_per_machine", "max_wallclock_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"resources.{name}", value, allowed="a positive integer")

    def options(self, withmpi: bool = False) -> dict[str, Any]:
        return {"resources": {"num_machines": self.num_machines,
                              "num_mpiprocs_per_machine": self.num_mpiprocs_per_machine},
                "max_wallclock_seconds": self.max_wallclock_seconds, "withmpi": withmpi}


@dataclass
class KkrRequest:
    """Everything the KKR launcher's form holds."""

    structure: Any = None  # ase.Atoms or orm.StructureData
    impurities: list[Impurity] = field(default_factory=list)
    backend: str = "engine"
    task: str = "exchange"
    host: str = "ti"
    kgrid: int = 16
    contour_points: int = 24
    screening: bool = False
    code: Any = None  # code node, uuid, pk or label (engine backend)
    resources: Resources = field(default_factory=Resources)
    # JuKKR backend
    jukkr_task: str = "scf"
    voronoi_code: Any = None
    kkr_code: Any = None
    kkrimp_code: Any = None
    host_calc: Any = None  # a converged kkr_scf_wc (pk/uuid/node), for "impurity" and "jij"
    host_settings: Any = None  # mlkkr.aiida.kkr.HostSettings (None: its defaults)
    impurity_settings: Any = None  # mlkkr.aiida.kkr.ImpuritySettings
    cluster_radius: float = 2.5
    jij_radius: float = 5.0
    jij_soc: bool = False  # J_ij with spin–orbit coupling: J, D and S
    label: str = ""


# ------------------------------------------------------------------------------------------ structure


def to_ase(structure: Any):
    """ase.Atoms of an ase.Atoms, StructureData or CifData (None stays None)."""
    if structure is None:
        return None
    if hasattr(structure, "get_ase"):
        return structure.get_ase()
    if hasattr(structure, "get_positions"):
        return structure
    raise InputError("structure", type(structure).__name__, allowed="a StructureData, CifData or ase.Atoms")


def nearest_neighbour_distance(atoms) -> float:
    """Shortest distance between two sites, periodic images included (Å)."""
    from ase.neighborlist import neighbor_list

    cell_lengths = atoms.cell.lengths()
    cutoff = float(max(cell_lengths.max() if len(cell_lengths) else 0.0, 1.0)) * 1.01
    if len(atoms) == 1 and atoms.pbc.all():
        return float(cell_lengths.min())
    _, _, d = neighbor_list("ijd", atoms, cutoff)
    d = d[d > 1e-6]
    if not len(d):
        raise InputError("structure", atoms.get_chemical_formula(), reason="no two sites: cannot find the lattice")
    return float(d.min())


def lattice_sites(structure: Any) -> tuple[float, np.ndarray]:
    """(lattice constant in Å, integer lattice vectors of the sites) of a simple-cubic structure.

    The built-in engine's hosts live on a simple-cubic lattice. A structure qualifies when its cell
    vectors are orthogonal whole multiples of its nearest-neighbour distance ``a`` and every site lies
    on a lattice point (within 5 % of ``a``); otherwise InputError on ``structure``.
    """
    atoms = to_ase(structure)
    if atoms is None:
        raise InputError("structure", None, reason="choose a structure first (upload one or pick an example)")
    if len(atoms) == 0:
        raise InputError("structure", atoms.get_chemical_formula(), reason="the structure has no sites")
    a = nearest_neighbour_distance(atoms)
    cell = np.asarray(atoms.cell[:], float)
    reason = ("the built-in engine models a simple-cubic host: the structure must be a supercell of a "
              f"simple-cubic lattice (nearest-neighbour distance {a:.3f} Å), like the examples; "
              "choose the JuKKR backend for other crystals")
    if abs(np.linalg.det(cell)) < 1e-6:
        raise InputError("structure", atoms.get_chemical_formula(), reason=reason)
    units = cell / a
    if np.abs(units - np.round(units)).max() > _ON_LATTICE or np.count_nonzero(np.round(units)) != 3 \
            or np.abs(np.round(units) - np.diag(np.diag(np.round(units)))).max() > 0:
        raise InputError("structure", atoms.get_chemical_formula(), reason=reason)
    frac = atoms.get_positions() / a
    sites = np.round(frac).astype(int)
    if np.abs(frac - sites).max() > _ON_LATTICE:
        raise InputError("structure", atoms.get_chemical_formula(), reason=reason)
    return a, sites


# ------------------------------------------------------------------------------------------- checks


def check_impurities(request: KkrRequest, n_sites: int) -> None:
    """At least one impurity (two magnetic ones for exchange), known elements, existing, distinct sites."""
    if not request.impurities:
        raise InputError("impurities", [], reason="add at least one impurity (element and site)")
    known = element_choices() if request.backend == "engine" else None
    seen: dict[int, int] = {}
    for k, imp in enumerate(request.impurities):
        if known is not None and imp.element not in known:
            raise InputError(f"impurities[{k}].element", imp.element, allowed=known)
        if request.backend == "jukkr":
            from mlkkr.aiida.kkr import Impurity as KkrImpurity

            try:
                _ = KkrImpurity(imp.element).z
            except InputError as exc:
                raise InputError(f"impurities[{k}].element", imp.element, reason=exc.reason) from None
        site = imp.site
        if site is None or isinstance(site, bool) or not isinstance(site, int | np.integer):
            raise InputError(f"impurities[{k}].site", site, allowed=f"a site index 0 … {n_sites - 1}")
        if not 0 <= site < n_sites:
            raise InputError(f"impurities[{k}].site", site,
                             reason=f"the structure has no site {site}: it has {n_sites} sites",
                             allowed=f"0 … {n_sites - 1}")
        if site in seen:
            raise InputError(f"impurities[{k}].site", site, reason=f"impurity {seen[site]} is on this site already")
        seen[int(site)] = k
    if request.backend == "engine" and request.task == "exchange":
        from mlkkr.greens.defects import ELEMENTS

        magnetic = [imp for imp in request.impurities if ELEMENTS[imp.element].magnetic]
        if len(magnetic) < 2:
            raise InputError("impurities", [i.element for i in request.impurities],
                             reason="exchange tensors need at least two magnetic impurities "
                                    f"({', '.join(s for s, e in ELEMENTS.items() if e.magnetic)})")


def _engine_field(name: str) -> str:
    """Map a field of the engine's input file to the launcher's form."""
    if name.startswith("defects["):
        return "impurities" + name[len("defects"):]
    if name.startswith("defects"):
        return "impurities"
    if name.startswith("host.lattice_constant"):
        return "structure"
    if name.startswith("contour"):
        return "contour_points"
    return name


def engine_input(request: KkrRequest) -> dict[str, Any]:
    """The ``mlkkr engine exchange|embed`` input (a YAML/TOML mapping), checked by the engine's own parser."""
    from mlkkr.greens.inputs import parse_input

    if request.host not in HOSTS:
        raise InputError("host", request.host, allowed=HOSTS)
    if request.task not in TASKS:
        raise InputError("task", request.task, allowed=list(TASKS))
    a, sites = lattice_sites(request.structure)
    check_impurities(request, len(sites))
    for name, value, lo, hi in (("kgrid", request.kgrid, 4, 64), ("contour_points", request.contour_points, 4, 400)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise InputError(name, value, allowed=f"an integer from {lo} to {hi}")
    origin = sites[request.impurities[0].site]
    data: dict[str, Any] = {
        "host": {"name": request.host, "lattice_constant": round(a, 6)},
        "kgrid": int(request.kgrid),
        "contour": {"kind": "semicircle", "n_points": int(request.contour_points)},
        "defects": [{"element": imp.element, "position": [int(x) for x in sites[imp.site] - origin]}
                    for imp in request.impurities],
    }
    if request.task == "exchange":
        data["exchange"] = {"screening": bool(request.screening)}
    try:
        parse_input(data, request.task)
    except InputError as exc:
        raise InputError(_engine_field(exc.field), exc.value, allowed=exc.allowed, reason=exc.reason or
                         str(exc).split(": ", 1)[-1]) from None
    return data


def resolve_code(code: Any, plugin: str, field_name: str = "code"):
    """The code node of ``code`` (node, uuid, pk or label); InputError naming ``field_name`` otherwise."""
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    if code is None or code == "":
        raise InputError(field_name, None, reason=f"choose a code (plugin {plugin}); set one up with "
                         "'Setup new code' if the list is empty")
    if isinstance(code, orm.AbstractCode):
        node = code
    else:
        try:
            node = orm.load_code(code)
        except (NotExistent, MultipleObjectsError, ValueError) as exc:
            raise InputError(field_name, code, reason=f"no such code ({exc})") from None
    if not node.computer.is_user_configured(orm.User.collection.get_default()):
        raise InputError(field_name, node.full_label, reason=f"computer {node.computer.label!r} is not configured")
    return node


def check(request: KkrRequest) -> None:
    """Every check of the form, in the order of the form; nothing is stored."""
    if request.backend not in BACKENDS:
        raise InputError("backend", request.backend, allowed=list(BACKENDS))
    if request.backend == "engine":
        engine_input(request)
        resolve_code(request.code, ENGINE_PLUGIN)
        request.resources.check()
    else:
        _jukkr(request, submit=False)


# --------------------------------------------------------------------------------------------- submit


def engine_builder(request: KkrRequest):
    """A ready-to-submit builder of EngineBaseWorkChain for the built-in engine (nothing stored yet)."""
    import io

    import yaml
    from aiida import orm

    from mlkkr.aiida.workflows import EngineBaseWorkChain

    data = engine_input(request)
    code = resolve_code(request.code, ENGINE_PLUGIN)
    request.resources.check()
    species = "-".join(i.element for i in request.impurities)
    label = request.label or f"{species} in {request.host} ({TASKS[request.task]})"
    builder = EngineBaseWorkChain.get_builder()
    builder.calc.code = code
    builder.calc.command = orm.Str(f"engine {request.task}")
    builder.calc.input_file = orm.SinglefileData(io.BytesIO(yaml.safe_dump(data, sort_keys=False).encode()),
                                                 filename="input.yaml")
    builder.calc.parameters = orm.Dict({})
    builder.calc.metadata.options = request.resources.options()
    builder.calc.metadata.label = label
    builder.metadata.label = label
    builder.metadata.description = "Submitted by the KKR launcher app (built-in engine)."
    return builder


#: a field of mlkkr.aiida.kkr's checks -> the launcher's form field
_JUKKR_FIELDS = {"impurity.site": "impurities[0].site", "impurity.element": "impurities[0].element",
                 "impurity.radius": "cluster_radius", "host": "host_calc", "radius": "jij_radius", "soc": "jij_soc",
                 "voronoi": "voronoi_code", "kkr": "kkr_code", "kkrimp": "kkrimp_code"}


def _jukkr_field(exc: InputError, prefix: str = "") -> InputError:
    name = _JUKKR_FIELDS.get(exc.field) or (f"{prefix}{exc.field}" if prefix and "." not in exc.field
                                            and exc.field not in ("structure",) else exc.field)
    return InputError(name, exc.value, allowed=exc.allowed, reason=exc.reason)


def _jukkr(request: KkrRequest, submit: bool) -> Any:
    """Check the JuKKR part of the form (``submit`` False) or submit it; returns the node when submitted."""
    from aiida import orm

    from mlkkr.aiida import kkr, kkr_launch

    if request.jukkr_task not in JUKKR_TASKS:
        raise InputError("jukkr_task", request.jukkr_task, allowed=list(JUKKR_TASKS))
    request.resources.check()
    options = kkr.options_dict(resources=request.resources.options()["resources"],
                               max_wallclock_seconds=request.resources.max_wallclock_seconds)
    voronoi = _kkr_code(request.voronoi_code, kkr.VORONOI, "voronoi_code")
    host_code = _kkr_code(request.kkr_code, kkr.KKRHOST, "kkr_code")
    try:
        if request.jukkr_task == "scf":
            atoms = to_ase(request.structure)
            if atoms is None:
                raise InputError("structure", None, reason="choose a structure first (upload one or pick an example)")
            settings = request.host_settings or kkr.HostSettings()
            try:
                settings.check()
            except InputError as exc:
                raise _jukkr_field(exc, "host.") from None
            structure = request.structure if isinstance(request.structure, orm.StructureData) else \
                orm.StructureData(ase=atoms)
            if not submit:
                kkr.host_scf_builder(structure, voronoi, host_code, settings=settings, options=options)
                return None
            return kkr_launch.submit_host(structure, settings, voronoi=voronoi, kkr_code=host_code, options=options,
                                          label=request.label)
        if request.host_calc in (None, ""):
            raise InputError("host_calc", None, reason="choose a converged host (run a host SCF first)")
        if submit:
            from mlkkr.aiida.kkr_results import converged_hosts

            converged_hosts()  # keep the converged hosts in their Group (from this, the submitting thread)
        host = kkr_launch.load_host(request.host_calc)
        if request.jukkr_task == "jij":
            if not submit:
                kkr.jij_builder(host, host_code, radius=request.jij_radius, soc=request.jij_soc, options=options)
                return None
            return kkr_launch.submit_jij(host, request.jij_radius, soc=request.jij_soc, kkr_code=host_code,
                                         options=options, label=request.label)
        if not request.impurities:
            raise InputError("impurities", [], reason="add the impurity to embed in the converged host")
        imp = request.impurities[0]
        impurity = kkr.Impurity(imp.element, int(imp.site) if isinstance(imp.site, int | np.integer) else -1,
                                request.cluster_radius)
        settings = request.impurity_settings or kkr.ImpuritySettings()
        try:
            settings.check()
        except InputError as exc:
            raise _jukkr_field(exc, "impurity.") from None
        kkrimp = _kkr_code(request.kkrimp_code, kkr.KKRIMP, "kkrimp_code")
        if not submit:
            kkr.impurity_builder(host, impurity, host_code, voronoi, kkrimp, settings=settings, options=options)
            return None
        return kkr_launch.submit_impurity(host, impurity, settings, voronoi=voronoi, kkr_code=host_code, kkrimp=kkrimp,
                                          options=options, label=request.label)
    except InputError as exc:
        raise _jukkr_field(exc) from None


def _kkr_code(code: Any, plugin: str, field_name: str):
    from mlkkr.aiida import kkr

    if code in (None, ""):
        raise InputError(field_name, None, allowed=kkr.codes_for(plugin) or f"a code of plugin {plugin} (none set up)",
                         reason=f"choose a {plugin} code")
    return kkr.resolve_code(code, plugin, field_name)


def submit(request: KkrRequest):
    """Check, build and submit; returns the process node (added to the group :data:`RESULTS_GROUP`)."""
    from mlkkr.aiida.kkr_launch import record
    from mlkkr.aiida.launch import launch

    check(request)
    if request.backend == "jukkr":
        return _jukkr(request, submit=True)
    return record(launch(engine_builder(request)), request.task, backend="engine")


# -------------------------------------------------------------------------------------------- results


def exchange_rows(node) -> list[dict[str, Any]]:
    """The pairs of a finished engine exchange run (EngineBaseWorkChain or EngineCalculation)."""
    summary = node.outputs.summary.get_dict()
    rows = []
    for p in summary.get("pairs", []):
        t = np.asarray(p["tensor_meV"], float)
        d = np.asarray(p["D_meV"], float)
        rows.append({"i": p["i"], "j": p["j"], "species": "-".join(p["species"]),
                     "distance": float(p["distance_angstrom"]), "J": float(p["J_meV"]), "D": d.tolist(),
                     "D_norm": float(np.linalg.norm(d)), "tensor": t.tolist()})
    return rows


def tensor_table_html(rows: list[dict[str, Any]]) -> str:
    """One block per pair: the 3×3 tensor J_ij (meV), J = Tr/3 and D (meV)."""
    from mlkkr.apps.widgets import html_table

    blocks = []
    for r in rows:
        t = r["tensor"]
        head = (f"<b>pair {r['i']}–{r['j']} ({r['species']}), r = {r['distance']:.3f} Å</b>: "
                f"J = {r['J']:.4f} meV, D = ({', '.join(f'{x:.4f}' for x in r['D'])}) meV, "
                f"|D| = {r['D_norm']:.4f} meV")
        table = html_table(["J_ij (meV)", "x", "y", "z"],
                           [[axis, *[float(v) for v in t[k]]] for k, axis in enumerate("xyz")])
        blocks.append(f'<div class="mlkkr-pair">{head}{table}</div>')
    return '<div class="mlkkr-tensor-table">' + "".join(blocks) + "</div>"


def exchange_figure(rows: list[dict[str, Any]]):
    """Plotly figure: J and |D| (meV) against the pair distance (Å)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("J (meV)", "|D| (meV)"))
    r = [row["distance"] for row in rows]
    text = [f"{row['i']}–{row['j']} {row['species']}" for row in rows]
    fig.add_trace(go.Scatter(x=r, y=[row["J"] for row in rows], mode="markers", name="J", text=text,
                             marker={"size": 10}), row=1, col=1)
    fig.add_trace(go.Scatter(x=r, y=[row["D_norm"] for row in rows], mode="markers", name="|D|", text=text,
                             marker={"size": 10, "symbol": "diamond"}), row=1, col=2)
    fig.add_hline(y=0, line={"color": "#a0aec0", "width": 1}, row=1, col=1)
    for col in (1, 2):
        fig.update_xaxes(title_text="distance (Å)", row=1, col=col)
    fig.update_layout(height=360, width=900, template="plotly_white", showlegend=False,
                      margin={"l": 50, "r": 20, "t": 40, "b": 50})
    return fig


def potential_record(node):
    """The ImpurityEmbedding of a finished engine ``embed`` run."""
    records = node.outputs.dataset.records()
    return records[0]


def potential_figure(record):
    """Plotly figure: ΔV (eV) at every grid site against its distance (Å) to the nearest impurity."""
    import plotly.graph_objects as go

    grid, pos = np.asarray(record.grid), np.asarray(record.positions)
    dist = np.linalg.norm(grid[:, None, :] - pos[None, :, :], axis=-1).min(axis=1)
    fig = go.Figure(go.Scatter(x=dist, y=record.delta_v, mode="markers", name="ΔV",
                               marker={"size": 8, "color": record.delta_v, "colorscale": "RdBu_r"}))
    fig.update_layout(title=f"ΔV around {', '.join(record.species)} ({len(grid)} sites)",
                      xaxis_title="distance to the nearest impurity (Å)", yaxis_title="ΔV (eV)",
                      height=360, width=700, template="plotly_white")
    return fig


def jukkr_progress(node) -> str:
    """For a running JuKKR work chain: how many KKR calculations have finished and the last rms."""
    if node.base.extras.get("mlkkr_backend", "") != "jukkr":
        return ""
    from mlkkr.aiida.kkr_launch import progress_text

    return progress_text(node)


def describe_state(node) -> tuple[str, str]:
    """(state, one-line text) of a process node for the status line: running, finished, failed."""
    state = node.process_state.value if node.process_state else "created"
    if node.is_finished_ok:
        return "finished", f"{node.process_label}<{node.pk}> finished"
    if node.is_failed or node.is_excepted or node.is_killed:
        msg = node.exit_message or (node.exception or "").strip().splitlines()[-1:] or state
        if isinstance(msg, list):
            msg = msg[0] if msg else state
        return "failed", f"{node.process_label}<{node.pk}> {state} (exit status {node.exit_status}): {msg}"
    return "running", f"{node.process_label}<{node.pk}> {state}"


def example_structures() -> dict[str, Any]:
    """Example structures (ase.Atoms): simple-cubic host supercells for the engine, crystals for JuKKR."""
    from ase import Atoms
    from ase.build import bulk

    from mlkkr.greens.hosts import HOSTS as ENGINE_HOSTS

    def sc(symbol: str, a: float, n: int) -> Atoms:
        return Atoms(symbol, positions=[[0, 0, 0]], cell=[a, a, a], pbc=True).repeat((n, n, n))

    ti_a = ENGINE_HOSTS["ti"].lattice_constant
    metal_a = ENGINE_HOSTS["metal"].lattice_constant
    return {
        f"TI model host, simple cubic a = {ti_a} Å, 3×3×3 (engine)": sc("Bi", ti_a, 3),
        f"metal model host, simple cubic a = {metal_a} Å, 3×3×3 (engine)": sc("Cu", metal_a, 3),
        "fcc Cu, a = 3.61 Å, primitive cell (JuKKR)": bulk("Cu", "fcc", a=3.61),
        "bcc Fe, a = 2.87 Å, primitive cell (JuKKR, start magnetic)": bulk("Fe", "bcc", a=2.87),
    }


def distance_between_sites(structure: Any, i: int, j: int) -> float:
    """Minimum-image distance between sites i and j (Å)."""
    atoms = to_ase(structure)
    return float(atoms.get_distance(i, j, mic=True))


def site_labels(structure: Any) -> list[tuple[str, int]]:
    """Dropdown options for the sites: ``"3: Bi (4.38, 0.00, 0.00) Å"``."""
    atoms = to_ase(structure)
    if atoms is None:
        return []
    out = []
    for k, (sym, p) in enumerate(zip(atoms.get_chemical_symbols(), atoms.get_positions(), strict=True)):
        out.append((f"{k}: {sym} ({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f}) Å", k))
    return out

