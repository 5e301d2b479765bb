"""aiida-kkr launchers: ready-to-submit builders for the JuKKR workflows, checked by dry runs.

Builders (aiida-kkr 2.3 work chains), every input checked before anything is stored or submitted
(:class:`~mlkkr.errors.InputError` names the field):

* :func:`host_scf_builder` — ``kkr_scf_wc`` (``kkr.scf``): voronoi starting potential + KKRhost
  self-consistency of a bulk (or 2D) structure.
* :func:`impurity_builder` — ``kkr_imp_wc`` (``kkr.imp``): host Green-function write-out (KKRFLEX),
  auxiliary voronoi of the impurity, KKRimp self-consistency of an impurity embedded in a converged host.
* :func:`pair_builder` — ``combine_imps_wc`` (``kkr.combine_imps``): two converged single embeddings joined
  into one cluster (an impurity pair with the shells of both), host GF written out again, KKRimp SCF.
* :func:`jij_builder` — ``kkr_jij_wc`` (``kkr.jij``): exchange interactions J_ij of a converged host.

:func:`dry_run` writes the real JuKKR input files of the jobs each workflow submits first — with
aiida-kkr's own input writers and the same parameter logic as the workflow (nothing stored, nothing
run): ``inputcard`` of the voronoi run (host SCF); ``inputcard`` with ``RUNOPT KKRFLEX`` and the
impurity cluster file ``scoef`` of the write-out, and the ``inputcard`` of the auxiliary voronoi run
with the impurity's atomic number (impurity); ``inputcard`` with ``RUNOPT XCPL`` and ``JIJRAD`` (Jij).
Later steps depend on results of the earlier ones and cannot be dry-run.

Units: impurity cluster radius and Jij radius in Å (aiida-kkr converts to lattice units).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.common.exceptions import MultipleObjectsError, NotExistent
from aiida.engine import ProcessBuilder

from mlkkr.aiida import kkr_compat
from mlkkr.errors import InputError

kkr_compat.install()  # the aiida-kkr 2.3.1 fixes, in this process too when the .pth hook is missing

VORONOI, KKRHOST, KKRIMP = "kkr.voro", "kkr.kkr", "kkr.kkrimp"
_DRY_RUN_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------- inputs


def resolve_code(code: orm.AbstractCode | str | int, plugin: str, field: str) -> orm.AbstractCode:
    """A code node for ``plugin`` from a node, label (``label@computer``) or pk; InputError otherwise."""
    if not isinstance(code, orm.AbstractCode):
        try:
            code = orm.load_code(code)
        except (NotExistent, MultipleObjectsError, ValueError):
            raise InputError(field, code, allowed=codes_for(plugin) or f"a code of plugin {plugin} (none exists)",
                             reason=f"no such code {code!r}") from None
    if code.default_calc_job_plugin != plugin:
        raise InputError(field, code.full_label, allowed=codes_for(plugin) or f"a code of plugin {plugin}",
                         reason=f"code {code.full_label!r} runs {code.default_calc_job_plugin!r}, not {plugin!r}")
    if not code.computer.is_user_configured(orm.User.collection.get_default()):
        raise InputError(field, code.full_label, reason=f"computer {code.computer.label!r} is not configured "
                         "(verdi computer configure)")
    return code


def codes_for(plugin: str) -> list[str]:
    """Full labels of the codes of ``plugin`` in the profile."""
    qb = orm.QueryBuilder().append(orm.AbstractCode, project="*")
    return sorted(c.full_label for (c,) in qb.iterall()
                  if isinstance(c, orm.AbstractCode) and c.default_calc_job_plugin == plugin)


def check_structure(structure: orm.StructureData, parameters: dict[str, Any] | None = None) -> None:
    """Fail (InputError, field ``structure``) unless aiida-kkr can set up a calculation for it.

    Checks: at least one site; a cell of non-zero volume; periodic in 3D, or in 2D with the 2D keys
    (aiida-kkr's ``check_2Dinput_consistency``); every species known to the periodic table; and
    aiida-kkr's own inputcard writer accepts it.
    """
    from aiida_kkr.tools.common_workfunctions import check_2Dinput_consistency, generate_inputcard_from_structure
    from masci_tools.io.kkr_params import kkrparams

    if not isinstance(structure, orm.StructureData):
        raise InputError("structure", type(structure).__name__, allowed="a StructureData")
    if not structure.sites:
        raise InputError("structure", structure.get_formula() if structure.kinds else "(empty)",
                         reason="the structure has no sites")
    if abs(np.linalg.det(np.asarray(structure.cell, float))) < 1e-6:
        raise InputError("structure", structure.get_formula(), reason="the cell has zero volume")
    params = orm.Dict(parameters or {})
    ok, message = check_2Dinput_consistency(structure, params)
    if not ok:
        raise InputError("structure", f"{structure.get_formula()} pbc={tuple(structure.pbc)}",
                         reason=f"aiida-kkr cannot take it: {message.splitlines()[0]}")
    full = kkrparams(params_type="voronoi")
    for key, value in kkrparams.get_KKRcalc_parameter_defaults()[0].items():
        full.set_value(key, value, silent=True)
    for key, value in (parameters or {}).items():
        full.set_value(key, value, silent=True)
    with tempfile.TemporaryDirectory(prefix="mlkkr-kkrcheck-") as tmp:
        try:
            generate_inputcard_from_structure(orm.Dict(full.get_dict()), structure, os.path.join(tmp, "inputcard"),
                                              isvoronoi=True)
        except Exception as exc:  # noqa: BLE001 - any failure of aiida-kkr's writer means: it cannot take it
            raise InputError("structure", structure.get_formula(),
                             reason=f"aiida-kkr cannot write its inputcard: {exc}") from None


def check_parameters(parameters: dict[str, Any] | None, field: str = "parameters") -> dict[str, Any]:
    """KKR parameters known to ``kkrparams`` (masci-tools), with a valid value each."""
    from masci_tools.io.kkr_params import kkrparams

    params = dict(parameters or {})
    known = kkrparams()
    for key, value in params.items():
        if key not in known.values:
            raise InputError(f"{field}.{key}", value, reason="not a KKR parameter (masci_tools kkrparams)")
        try:
            known.set_value(key, value, silent=True)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{field}.{key}", value, reason=str(exc)) from None
    return params


def host_remote(host: orm.Node) -> orm.RemoteData:
    """The remote folder of a converged KKRhost calculation, from it, its CalcJob or a ``kkr_scf_wc``."""
    from aiida_kkr.calculations import KkrCalculation

    node = host
    if isinstance(node, orm.WorkflowNode):
        if "last_RemoteData" not in node.outputs:
            raise InputError("host", f"{node.pk} ({node.process_label})",
                             reason="not a finished kkr_scf_wc (no last_RemoteData output)")
        node = node.outputs.last_RemoteData
    if isinstance(node, orm.CalcJobNode):
        node = node.outputs.remote_folder if "remote_folder" in node.outputs else None
    if not isinstance(node, orm.RemoteData):
        raise InputError("host", getattr(host, "pk", host),
                         allowed="a kkr_scf_wc, a KkrCalculation or its remote_folder")
    creators = node.base.links.get_incoming(node_class=orm.CalcJobNode).all()
    if len(creators) != 1 or creators[0].node.process_class is not KkrCalculation:
        raise InputError("host", node.pk, reason="the remote folder does not come from one KkrCalculation")
    if not creators[0].node.is_finished_ok:
        raise InputError("host", node.pk, reason=f"its KkrCalculation<{creators[0].node.pk}> did not finish ok")
    return node


def options_dict(resources: dict[str, Any] | None = None, max_wallclock_seconds: int = 3600,
                 queue_name: str = "", withmpi: bool | None = None, custom_scheduler_commands: str = "",
                 **extra: Any) -> dict[str, Any]:
    """The ``options`` input of the aiida-kkr work chains (scheduler resources and settings).

    ``withmpi`` None: taken from the code when the builder has it (``with_mpi`` of the InstalledCode;
    the codes mlkkr builds here are serial), else True as aiida-kkr assumes.
    """
    if isinstance(max_wallclock_seconds, bool) or not isinstance(max_wallclock_seconds, int) \
            or max_wallclock_seconds < 1:
        raise InputError("max_wallclock_seconds", max_wallclock_seconds, allowed="a positive integer (s)")
    out = {"resources": dict(resources or {"num_machines": 1}), "max_wallclock_seconds": max_wallclock_seconds,
           "queue_name": queue_name, "custom_scheduler_commands": custom_scheduler_commands, **extra}
    if withmpi is not None:
        out["withmpi"] = bool(withmpi)
    return out


def _options_for(code: orm.AbstractCode, options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` with ``withmpi`` set from the code when not given (aiida refuses a mismatch)."""
    out = dict(options or options_dict())
    if out.get("withmpi") is None:
        with_mpi = getattr(code, "with_mpi", None)
        out["withmpi"] = True if with_mpi is None else bool(with_mpi)
    return out


# ------------------------------------------------------------------------------------------ settings


def _check_number(field: str, value: Any, lo: float, hi: float, integer: bool = False, unit: str = "") -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        raise InputError(field, value, allowed=f"{'an integer' if integer else 'a number'} from {lo:g} to "
                         f"{hi:g}{' ' + unit if unit else ''}")


def local_site_limit() -> int:
    """Sites per cell that this server's own computer takes (``$MLKKR_JUKKR_MAX_LOCAL_SITES``, default 4):
    KKRhost's cost grows with the cube of the sites, and a user server has a couple of cores."""
    import os

    try:
        return max(1, int(os.environ.get("MLKKR_JUKKR_MAX_LOCAL_SITES", "4")))
    except ValueError:
        return 4


def is_local(code: orm.AbstractCode) -> bool:
    """The code runs on this server (local transport, direct scheduler)."""
    computer = code.computer
    return computer.transport_type == "core.local" and computer.scheduler_type == "core.direct"


@dataclass
class HostSettings:
    """The host SCF (``kkr_scf_wc``): defaults that converge fcc Cu and bcc Fe at lmax 2 in about a minute here.

    lmax: angular-momentum cut-off; nspin: 1 or 2 (2 is needed for magnetic impurities later);
    kmesh: the fine k-mesh per direction (kkr_scf_wc first pre-converges on 10³); convergence: the rms
    error of the potential at which the SCF stops; max_iterations: KKRhost iterations in all;
    mag_init: start with a magnetic moment (bcc Fe); mixing_threshold: Broyden mixing once the rms is
    below it (None: 5, from the first iteration, for a non-magnetic start — fcc Cu in 43 instead of 62
    iterations against 0.3 —, and 0.3 with ``mag_init``: bcc Fe in 64 iterations, 108 s, where Broyden
    from the start had not converged after 150);
    dos: compute the DOS of the converged host (aiida-kkr's ``check_dos``: one more KKRhost run).
    """

    lmax: int = 2
    nspin: int = 2
    kmesh: int = 20
    convergence: float = 1e-6
    max_iterations: int = 250
    mag_init: bool = False
    mixing_threshold: float | None = None
    dos: bool = False

    NSTEPS = 50  # KKRhost iterations per calculation (aiida-kkr's nsteps)

    def check(self) -> None:
        _check_number("lmax", self.lmax, 1, 4, integer=True)
        if self.nspin not in (1, 2) or isinstance(self.nspin, bool):
            raise InputError("nspin", self.nspin, allowed=[1, 2])
        _check_number("kmesh", self.kmesh, 4, 60, integer=True, unit="k points per direction")
        _check_number("convergence", self.convergence, 1e-10, 1e-2, unit="(rms of the potential)")
        _check_number("max_iterations", self.max_iterations, 10, 2000, integer=True)
        for name in ("mag_init", "dos"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(name, getattr(self, name), allowed=[True, False])
        if self.mixing_threshold is not None:
            _check_number("mixing_threshold", self.mixing_threshold, 1e-6, 100)

    @property
    def threshold(self) -> float:
        if self.mixing_threshold is not None:
            return float(self.mixing_threshold)
        return 0.3 if self.mag_init else 5.0

    def parameters(self) -> dict[str, Any]:
        return {"LMAX": self.lmax, "NSPIN": self.nspin, "RMAX": 7.0, "GMAX": 65.0}

    def wf_parameters(self) -> dict[str, Any]:
        return {"convergence_criterion": float(self.convergence), "mag_init": self.mag_init,
                "check_dos": self.dos, "threshold_aggressive_mixing": self.threshold,
                "nsteps": min(self.NSTEPS, self.max_iterations),
                "kkr_runmax": max(1, -(-self.max_iterations // self.NSTEPS)),
                "convergence_setting_fine": {"npol": 5, "n1": 7, "n2": 29, "n3": 7, "tempr": 600.0,
                                             "kmesh": [self.kmesh] * 3}}


#: 3d/4f elements started with a moment in the impurity SCF (when the host has NSPIN 2)
MAGNETIC = ("V", "Cr", "Mn", "Fe", "Co", "Ni", "Gd")
#: the energy contour of a host-GF write-out for a one-atom cluster: gfortran builds of KKRhost stop in
#: main1b ("Write exceeds length of DIRECT access record", kkrflex_green) above 19 points
ONE_ATOM_CONTOUR = {"NPOL": 5, "NPT1": 3, "NPT2": 7, "NPT3": 3}


@dataclass
class ImpuritySettings:
    """The impurity embedding (``kkr_imp_wc``): a cluster of ``radius`` Å around the impurity site.

    radius 2.5 Å in fcc Cu (a = 3.61 Å) is the impurity alone (≈ 20 s here); 2.6 Å adds its 12 nearest
    neighbours (minutes). convergence: rms of the impurity potential; max_iterations: KKRimp
    iterations in all; strmix / mixing_threshold: simple mixing, then Broyden below that rms (0.01 and
    0.1 converge Fe in Cu with its neighbours; aiida-kkr's 0.05 oscillates); mag_init: start with a
    moment (None: for V, Cr, Mn, Fe, Co, Ni, Gd on a spin-polarised host).
    """

    radius: float = 2.5
    convergence: float = 1e-6
    max_iterations: int = 150
    strmix: float = 0.01
    mixing_threshold: float = 0.1
    mag_init: bool | None = None

    NSTEPS = 50

    def check(self, local: bool = False) -> None:
        _check_number("radius", self.radius, 0.1, 6.0 if local else 20.0, unit="Å")
        _check_number("convergence", self.convergence, 1e-10, 1e-2)
        _check_number("max_iterations", self.max_iterations, 5, 2000, integer=True)
        _check_number("strmix", self.strmix, 1e-4, 1.0)
        _check_number("mixing_threshold", self.mixing_threshold, 1e-6, 100)
        if self.mag_init is not None and not isinstance(self.mag_init, bool):
            raise InputError("mag_init", self.mag_init, allowed=[True, False, None])

    def wf_parameters(self, magnetic: bool) -> dict[str, Any]:
        return {"convergence_criterion": float(self.convergence), "strmix": float(self.strmix),
                "threshold_aggressive_mixing": float(self.mixing_threshold),
                "nsteps": min(self.NSTEPS, self.max_iterations),
                "kkr_runmax": max(1, -(-self.max_iterations // self.NSTEPS)),
                "mag_init": bool(magnetic if self.mag_init is None else self.mag_init)}


@dataclass(frozen=True)
class Impurity:
    """One substitutional impurity: ``element`` on host site ``site``, embedded in a cluster of ``radius`` Å."""

    element: str
    site: int = 0
    radius: float = 2.5

    @property
    def z(self) -> int:
        """Atomic number (0 for a vacancy, ``X``)."""
        from aiida.common.constants import elements

        table = {v["symbol"]: k for k, v in elements.items()}
        if self.element not in table:
            raise InputError("impurity.element", self.element, reason="not an element symbol")
        return int(table[self.element])

    def impurity_info(self) -> dict[str, Any]:
        """aiida-kkr's ``impurity_info`` (Zimp, ilayer_center, Rcut in Å)."""
        return {"Zimp": [float(self.z)], "ilayer_center": int(self.site), "Rcut": float(self.radius)}

    def check(self, structure: orm.StructureData, local: bool = False) -> None:
        _ = self.z
        if isinstance(self.site, bool) or not isinstance(self.site, int) or not 0 <= self.site < len(structure.sites):
            raise InputError("impurity.site", self.site, allowed=f"a site index 0 … {len(structure.sites) - 1}")
        limit = 6.0 if local else 20.0
        if isinstance(self.radius, bool) or not isinstance(self.radius, int | float) or not 0 < self.radius <= limit:
            raise InputError("impurity.radius", self.radius,
                             allowed=f"a cluster radius in Å, 0 < r ≤ {limit:g}"
                                     + (" on this server (larger clusters: an HPC computer)" if local else ""))

    def cluster_size(self, structure: orm.StructureData) -> int:
        """Atoms of the impurity cluster: the site and every periodic image within ``radius``."""
        from ase.neighborlist import neighbor_list

        atoms = structure.get_ase()
        first = neighbor_list("i", atoms, float(self.radius), self_interaction=False)
        return 1 + int(np.count_nonzero(first == self.site))


# ------------------------------------------------------------------------------------------- builders

#: converged hosts (kkr_scf_wc) submitted by mlkkr, offered for reuse by the KKR launcher and the CLI
HOSTS_GROUP = "mlkkr/kkr-hosts"


def host_scf_builder(structure: orm.StructureData, voronoi: orm.AbstractCode | str, kkr: orm.AbstractCode | str, *,
                     settings: HostSettings | None = None, parameters: dict[str, Any] | None = None,
                     wf_parameters: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                     label: str = "") -> ProcessBuilder:
    """``kkr_scf_wc`` from a structure: voronoi starting potential, then KKRhost to self-consistency.

    ``settings``: :class:`HostSettings` (the defaults converge fcc Cu and bcc Fe here); ``parameters``:
    more KKR parameters (``LMAX``, ``NSPIN``, ``BZDIVIDE`` …), over the settings'; ``wf_parameters``:
    overrides of ``kkr_scf_wc.get_wf_defaults()``; ``options``: :func:`options_dict`.
    """
    from aiida_kkr.workflows import kkr_scf_wc

    settings = settings or HostSettings()
    settings.check()
    params = check_parameters({**settings.parameters(), **(parameters or {})})
    check_structure(structure, params)
    voro_code = resolve_code(voronoi, VORONOI, "voronoi")
    kkr_code = resolve_code(kkr, KKRHOST, "kkr")
    limit = local_site_limit()
    if is_local(kkr_code) and len(structure.sites) > limit:
        raise InputError("structure", structure.get_formula(),
                         reason=f"{len(structure.sites)} sites in the cell: JuKKR on this server takes at most {limit} "
                                "(KKRhost's cost grows with the cube of the sites); use the codes of an HPC computer")
    wf_default, _ = kkr_scf_wc.get_wf_defaults(silent=True)
    wf = _merge_known(dict(wf_default), {**settings.wf_parameters(), **(wf_parameters or {})}, "wf_parameters")
    builder = kkr_scf_wc.get_builder()
    builder.structure = structure
    builder.voronoi = voro_code
    builder.kkr = kkr_code
    builder.calc_parameters = orm.Dict(_with_kkr_defaults(params))
    builder.wf_parameters = orm.Dict(wf)
    builder.options = orm.Dict(_options_for(kkr_code, options))
    builder.metadata.label = label or f"host SCF {structure.get_formula()}"
    return builder


def host_state(host: orm.Node) -> dict[str, Any]:
    """Convergence of a host: ``{"converged", "rms", "fermi_energy_ry", "nspin"}`` (None when unknown)."""
    remote = host_remote(host)
    calc = remote.creator
    out = calc.outputs.output_parameters.get_dict() if "output_parameters" in calc.outputs else {}
    state = {"converged": None, "rms": out.get("convergence_group", {}).get("rms"),
             "fermi_energy_ry": out.get("fermi_energy"), "nspin": out.get("nspin"),
             "total_spin_moment": (out.get("magnetism_group") or {}).get("total_spin_moment")}
    if isinstance(host, orm.WorkflowNode) and "output_kkr_scf_wc_ParameterResults" in host.outputs:
        state["converged"] = bool(host.outputs.output_kkr_scf_wc_ParameterResults.get_dict().get("convergence_reached"))
    elif "convergence_group" in out:
        state["converged"] = bool(out["convergence_group"].get("calculation_converged"))
    return state


def _check_converged(host: orm.Node, state: dict[str, Any]) -> None:
    if state["converged"] is False:
        raise InputError("host", getattr(host, "pk", host),
                         reason=f"the host did not converge (last rms {state['rms']}): embed impurities only in a "
                                "converged host — rerun its SCF with more iterations or a looser criterion")


def impurity_builder(host: orm.Node, impurity: Impurity, kkr: orm.AbstractCode | str,
                     voronoi: orm.AbstractCode | str, kkrimp: orm.AbstractCode | str, *,
                     settings: ImpuritySettings | None = None, wf_parameters: dict[str, Any] | None = None,
                     options: dict[str, Any] | None = None, params_kkr_overwrite: dict[str, Any] | None = None,
                     label: str = "") -> ProcessBuilder:
    """``kkr_imp_wc``: embed ``impurity`` in the converged host ``host`` (kkr_scf_wc, KkrCalculation or remote).

    Besides aiida-kkr's inputs it sets: the Fermi level of the impurity's starting potential to the
    host's (``voro_params_overwrite = {"EFSET": E_F}``: aiida-kkr 2.3.1 writes ``EF_SET``, which voronoi
    ignores), the 18-point write-out contour of :data:`ONE_ATOM_CONTOUR` for a one-atom cluster, and
    ``mag_init`` for magnetic elements; it refuses a host that did not converge, and a magnetic
    impurity in a host converged without spin polarisation (KKRimp stops on it).
    """
    from aiida_kkr.tools.find_parent import find_parent_structure
    from aiida_kkr.workflows import kkr_imp_wc

    settings = settings or ImpuritySettings()
    remote = host_remote(host)
    state = host_state(host)
    _check_converged(host, state)
    structure, _ = find_parent_structure(remote)
    kkr_code = resolve_code(kkr, KKRHOST, "kkr")
    impurity.check(structure, local=is_local(kkr_code))
    settings.check(local=is_local(kkr_code))
    magnetic = impurity.element in MAGNETIC if settings.mag_init is None else settings.mag_init
    if magnetic and state["nspin"] == 1:
        if settings.mag_init:
            raise InputError("host", getattr(host, "pk", host),
                             reason=f"a magnetic start ({impurity.element}) needs a spin-polarised host: this one "
                                    "was converged with NSPIN 1; rerun the host SCF with nspin 2")
        magnetic = False  # a non-magnetic start in a non-magnetic host: KKRimp can run it
    _, wf_default, voro_default = kkr_imp_wc.get_wf_defaults(silent=True)
    overwrite = dict(params_kkr_overwrite or {})
    if impurity.cluster_size(structure) == 1:
        overwrite = {**ONE_ATOM_CONTOUR, **overwrite}
    builder = kkr_imp_wc.get_builder()
    builder.remote_data_host = remote
    builder.kkr = kkr_code
    builder.voronoi = resolve_code(voronoi, VORONOI, "voronoi")
    builder.kkrimp = resolve_code(kkrimp, KKRIMP, "kkrimp")
    builder.impurity_info = orm.Dict(impurity.impurity_info())
    builder.wf_parameters = orm.Dict(_merge_known(dict(wf_default), {**settings.wf_parameters(magnetic),
                                                                     **(wf_parameters or {})}, "wf_parameters"))
    builder.voro_aux_parameters = orm.Dict(dict(voro_default))
    if state["fermi_energy_ry"] is not None:
        builder.voro_params_overwrite = orm.Dict({"EFSET": float(state["fermi_energy_ry"])})
    builder.options = orm.Dict(_options_for(kkr_code, options))
    if overwrite:
        builder.params_kkr_overwrite = orm.Dict(check_parameters(overwrite, "params_kkr_overwrite"))
    builder.metadata.label = label or f"{impurity.element} in {structure.get_formula()} (site {impurity.site})"
    return builder


def embedding_state(node: orm.Node) -> dict[str, Any]:
    """A finished single embedding (``kkr_imp_wc``): its host remote folder, structure, cluster, spin and
    convergence — what :func:`pair_builder` checks before two embeddings are combined."""
    from aiida_kkr.tools.find_parent import find_parent_structure

    if not isinstance(node, orm.WorkflowNode) or (node.process_label or "") != "kkr_imp_wc":
        raise InputError("embedding", getattr(node, "pk", node), allowed="a kkr_imp_wc work chain (one impurity)")
    if not node.is_finished_ok or "workflow_info" not in node.outputs:
        raise InputError("embedding", node.pk, reason=f"kkr_imp_wc<{node.pk}> did not finish ok "
                                                     f"(exit status {node.exit_status})")
    info = node.outputs.workflow_info.get_dict()
    subs = sorted((c for c in node.called if (c.process_label or "") == "kkr_imp_sub_wc"), key=lambda c: c.ctime)
    flex = [c for c in node.called if (c.process_label or "") == "kkr_flex_wc"]
    if not subs or not flex:
        raise InputError("embedding", node.pk, reason="no KKRimp self-consistency or host GF write-out in it")
    impinfo = node.inputs.impurity_info.get_dict()
    zimp = impinfo.get("Zimp")
    zimp = list(zimp) if isinstance(zimp, list | tuple) else [zimp]
    if len(zimp) != 1:
        raise InputError("embedding", node.pk, reason=f"it embeds {len(zimp)} impurities; combine single ones")
    host = node.inputs.remote_data_host if "remote_data_host" in node.inputs else None
    structure, _ = find_parent_structure(host if host is not None else flex[0])
    if "workflow_info" not in subs[-1].outputs:
        raise InputError("embedding", node.pk, reason="its KKRimp self-consistency has no workflow_info output")
    sub_info = subs[-1].outputs.workflow_info.get_dict()
    return {"sub": subs[-1], "host_uuid": host.uuid if host is not None else None, "structure_uuid": structure.uuid,
            "z": float(zimp[0]), "site": int(impinfo.get("ilayer_center", 0)), "radius": impinfo.get("Rcut"),
            "converged": bool(info.get("converged", sub_info.get("convergence_reached", False))),
            "nspin": int(sub_info.get("nspin", info.get("nspin", 1)) or 1)}


def pair_builder(first: orm.Node, second: orm.Node, kkr: orm.AbstractCode | str, kkrimp: orm.AbstractCode | str, *,
                 offset: int = 1, settings: ImpuritySettings | None = None, options: dict[str, Any] | None = None,
                 allow_unconverged: bool = False, label: str = "") -> ProcessBuilder:
    """``combine_imps_wc``: two converged single embeddings (``kkr_imp_wc``) in the same host joined into one
    cluster, the second impurity moved to the ``offset``-th in-plane neighbour of the first (aiida-kkr's
    ``offset_imp2.index``: 1 is the nearest neighbour) — each keeps the shells its own cluster had.

    The host Green function of the joined cluster is written out again (KKRhost, ``kkr_flex_wc``), the
    start potential is the two converged potentials put together, and KKRimp converges the pair with
    ``settings`` (its ``radius`` is not used: the clusters are the embeddings'). Refused: embeddings in
    different hosts, with different spin polarisation, unconverged (unless ``allow_unconverged``), an
    offset outside 1 … 12.
    """
    from aiida_kkr.workflows import combine_imps_wc, kkr_imp_sub_wc

    settings = settings or ImpuritySettings()
    a, b = (first if isinstance(first, orm.Node) else orm.load_node(first),
            second if isinstance(second, orm.Node) else orm.load_node(second))
    sa, sb = embedding_state(a), embedding_state(b)
    kkr_code = resolve_code(kkr, KKRHOST, "kkr")
    settings.check(local=is_local(kkr_code))
    _check_number("offset", offset, 1, 12, integer=True)
    if sa["structure_uuid"] != sb["structure_uuid"] or sa["host_uuid"] != sb["host_uuid"]:
        raise InputError("second", b.pk, reason=f"embedded in another host than kkr_imp_wc<{a.pk}>")
    if sa["nspin"] != sb["nspin"]:
        raise InputError("second", b.pk, reason=f"NSPIN {sb['nspin']} but the first embedding has {sa['nspin']}")
    for name, node, state in (("first", a, sa), ("second", b, sb)):
        if not state["converged"] and not allow_unconverged:
            raise InputError(name, node.pk, reason="this embedding did not converge; combine converged ones "
                                                   "(or allow unconverged inputs)")
    magnetic = bool(settings.mag_init)  # the single potentials carry their moments already
    builder = combine_imps_wc.get_builder()
    # the kkr_imp_sub_wc's output, not the kkr_imp_wc's: with a kkr_imp_wc as input, aiida-kkr 2.3.1's
    # get_ldau_combined reads a variable it never set (UnboundLocalError) after the GF write-out ran
    builder.impurity1_output_node = sa["sub"].outputs.workflow_info
    builder.impurity2_output_node = sb["sub"].outputs.workflow_info
    builder.offset_imp2 = orm.Dict({"index": int(offset)})
    builder.scf.kkrimp = resolve_code(kkrimp, KKRIMP, "kkrimp")
    builder.scf.options = orm.Dict(_options_for(builder.scf.kkrimp, options))
    builder.scf.wf_parameters = orm.Dict(_merge_known(dict(kkr_imp_sub_wc.get_wf_defaults(silent=True)),
                                                      settings.wf_parameters(magnetic), "wf_parameters"))
    builder.host_gf.kkr = kkr_code
    builder.host_gf.options = orm.Dict(_options_for(kkr_code, options))
    if allow_unconverged:
        builder.wf_parameters_overwrite = orm.Dict({"global": {"allow_unconverged_inputs": True}})
    builder.metadata.label = label or f"{a.label or a.pk} + {b.label or b.pk} (offset {offset})"
    return builder


#: KKRhost's Chebyshev solver with spin–orbit coupling: the radial mesh of JuKKR's own SOC tests at lmax 2
#: (NPAN_LOG log panels up to R_LOG bohr, then NPAN_EQ equidistant ones, NCHEB points each)
SOC_CHEBYSHEV = {"<USE_CHEBYCHEV_SOLVER>": True, "NPAN_LOG": 5, "NPAN_EQ": 7, "NCHEB": 10, "R_LOG": 0.6}


def jij_builder(host: orm.Node, kkr: orm.AbstractCode | str, *, radius: float = 5.0,
                sites_i: list[int] | None = None, sites_j: list[int] | None = None,
                accuracy: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                params_kkr_overwrite: dict[str, Any] | None = None, soc: bool = False,
                label: str = "") -> ProcessBuilder:
    """``kkr_jij_wc``: exchange interactions up to ``radius`` Å of the converged, magnetic host ``host``.

    ``soc``: the J_ij run uses KKRhost's Chebyshev solver with spin–orbit coupling (:data:`SOC_CHEBYSHEV`) on
    the host's potential, converged with or without SOC: kkr_jij_wc then runs three magnetisation directions
    and gives the full tensor (J, D, S); without it, the isotropic J of the host's own solver."""
    from aiida_kkr.tools.find_parent import find_parent_structure
    from aiida_kkr.workflows import kkr_jij_wc

    remote = host_remote(host)
    state = host_state(host)
    _check_converged(host, state)
    structure, _ = find_parent_structure(remote)
    _check_jij_parent(remote)
    moment = abs(state["total_spin_moment"] or 0.0)
    if state["nspin"] == 1 or moment < 0.05:
        raise InputError("host", getattr(host, "pk", host), reason="J_ij needs a magnetic host converged with "
                         f"NSPIN 2 and mag_init; this one has NSPIN {state['nspin']} and a moment of {moment:.3f} μB")
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not 0 < radius <= 30:
        raise InputError("radius", radius, allowed="a Jij radius in Å, 0 < r ≤ 30")
    for field, sites in (("sites_i", sites_i), ("sites_j", sites_j)):
        if sites is not None and not all(isinstance(s, int) and 0 <= s < len(structure.sites) for s in sites):
            raise InputError(field, sites, allowed=f"site indices 0 … {len(structure.sites) - 1}")
    wf = dict(kkr_jij_wc.get_wf_defaults(silent=True))
    wf.update({"jijrad_ang": float(radius), "jijsite_i": sites_i, "jijsite_j": sites_j})
    if accuracy:
        unknown = sorted(set(accuracy) - set(wf["accuracy"]))
        if unknown:
            raise InputError(f"accuracy.{unknown[0]}", accuracy[unknown[0]], allowed=sorted(wf["accuracy"]))
        wf["accuracy"] = {**wf["accuracy"], **accuracy}
    if not isinstance(soc, bool):
        raise InputError("soc", soc, allowed=[True, False])
    if soc:
        params_kkr_overwrite = {**SOC_CHEBYSHEV, **(params_kkr_overwrite or {})}
    kkr_code = resolve_code(kkr, KKRHOST, "kkr")
    builder = kkr_jij_wc.get_builder()
    builder.remote_data = remote
    builder.kkr = kkr_code
    builder.wf_parameters = orm.Dict(wf)
    builder.options = orm.Dict(_options_for(kkr_code, options))
    if params_kkr_overwrite:
        builder.params_kkr_overwrite = orm.Dict(check_parameters(params_kkr_overwrite, "params_kkr_overwrite"))
    builder.metadata.label = label or f"Jij {structure.get_formula()} r<{radius} Å"
    return builder


def _check_jij_parent(remote: orm.RemoteData) -> None:
    """kkr_jij_wc re-reads the host's parameters with ``kkrparams(**params)``: fail now if that fails."""
    from aiida_kkr.tools.common_workfunctions import get_parent_paranode
    from masci_tools.io.kkr_params import kkrparams

    try:
        kkrparams(**get_parent_paranode(remote).get_dict())
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("host", remote.pk, reason=f"aiida-kkr's kkr_jij_wc cannot read the host calculation's "
                         f"parameters (kkrparams rejects key {exc}); rerun the host with current aiida-kkr") from None


def _merge_known(defaults: dict[str, Any], overrides: dict[str, Any] | None, field: str) -> dict[str, Any]:
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise InputError(f"{field}.{key}", value, allowed=sorted(defaults))
        defaults[key] = value
    return defaults


def _with_kkr_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with aiida-kkr's default KKR parameters (as kkr_startpot_wc does)."""
    from masci_tools.io.kkr_params import kkrparams

    full = kkrparams()
    for key, value in kkrparams.get_KKRcalc_parameter_defaults()[0].items():
        full.set_value(key, value, silent=True)
    for key, value in params.items():
        full.set_value(key, value, silent=True)
    return {k: v for k, v in full.get_dict().items() if v is not None}


# -------------------------------------------------------------------------------------------- dry runs


@contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    """Work in ``path`` (aiida-core writes dry runs to ``./submit_test``); one dry run at a time."""
    with _DRY_RUN_LOCK:
        old = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(old)


def _dry_run_calc(builder: ProcessBuilder, destination: Path) -> Path:
    """Run a CalcJob builder as a dry run (nothing stored); its input files copied to ``destination``."""
    from aiida.engine import run_get_node

    builder.metadata.dry_run = True
    builder.metadata.store_provenance = False
    with tempfile.TemporaryDirectory(prefix="mlkkr-dryrun-") as tmp, _in_directory(Path(tmp)):
        _, node = run_get_node(builder)
        folder = Path(node.dry_run_info["folder"])
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(folder, destination, ignore=shutil.ignore_patterns(".aiida"))
    return destination


def _calc_options(options: dict[str, Any]) -> dict[str, Any]:
    keep = ("resources", "max_wallclock_seconds", "queue_name", "custom_scheduler_commands")
    return {k: v for k, v in options.items() if k in keep and v not in ("", None)}


def dry_run(builder: ProcessBuilder, destination: str | Path) -> dict[str, Path]:
    """Write the JuKKR input files of the first jobs of ``builder``'s workflow under ``destination``.

    Returns ``{step: folder}``: ``voronoi`` (host SCF); ``gf_writeout`` and ``voronoi_impurity``
    (impurity); ``jij`` (Jij). Nothing is stored in the profile.
    """
    from aiida_kkr.workflows import kkr_imp_wc, kkr_jij_wc, kkr_scf_wc

    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    process = builder.process_class
    if process is kkr_scf_wc:
        return {"voronoi": _dry_run_host_scf(builder, destination / "voronoi")}
    if process is kkr_imp_wc:
        return _dry_run_impurity(builder, destination)
    if process is kkr_jij_wc:
        return {"jij": _dry_run_jij(builder, destination / "jij")}
    raise InputError("builder", getattr(process, "__name__", process), allowed=["kkr_scf_wc", "kkr_imp_wc",
                                                                                "kkr_jij_wc"])


def voronoi_builder(builder: ProcessBuilder) -> ProcessBuilder:
    """The VoronoiCalculation that a ``kkr_scf_wc`` builder starts with (its first kkr_startpot_wc job):
    the screening cluster radius RCLUSTZ from the minimal cluster size, as the workflow sets it."""
    from aiida_kkr.tools.common_workfunctions import get_inputs_voronoi
    from aiida_kkr.tools.find_cluster_radius import find_cluster_radius
    from masci_tools.io.common_functions import get_alat_from_bravais
    from masci_tools.io.kkr_params import kkrparams

    structure = builder.structure
    params = dict(builder.calc_parameters.get_dict())
    wf = builder.wf_parameters.get_dict()
    nclsmin = wf.get("natom_in_cls_min", 79)
    r_cls = find_cluster_radius(structure, nclsmin)[0] / get_alat_from_bravais(np.asarray(structure.cell),
                                                                                structure.pbc[2])
    if params.get("RCLUSTZ") is None or params["RCLUSTZ"] < r_cls:
        params["RCLUSTZ"] = r_cls
    full = kkrparams()
    for key, value in params.items():
        full.set_value(key, value, silent=True)
    options = _calc_options(builder.options.get_dict())
    options["withmpi"] = builder.options.get_dict().get("withmpi", False)
    return get_inputs_voronoi(builder.voronoi, structure, options, "voronoi", "", params=orm.Dict(full.get_dict()))


def _dry_run_host_scf(builder: ProcessBuilder, destination: Path) -> Path:
    """The voronoi job of kkr_startpot_wc (first iteration)."""
    return _dry_run_calc(voronoi_builder(builder), destination)


def _dry_run_impurity(builder: ProcessBuilder, destination: Path) -> dict[str, Path]:
    """The host GF write-out (KkrCalculation with impurity_info) and the auxiliary impurity voronoi."""
    from aiida_kkr.tools.common_workfunctions import get_inputs_kkr, get_inputs_voronoi, get_parent_paranode
    from aiida_kkr.tools.find_parent import find_parent_structure
    from aiida_kkr.workflows.kkr_imp import change_struc_imp_aux_wf
    from masci_tools.io.kkr_params import kkrparams

    remote = builder.remote_data_host
    options = _calc_options(builder.options.get_dict())
    params = get_parent_paranode(remote)
    if "params_kkr_overwrite" in builder and builder.params_kkr_overwrite is not None:
        params = orm.Dict({**params.get_dict(), **builder.params_kkr_overwrite.get_dict()})
    flex = get_inputs_kkr(builder.kkr, remote, dict(options), "KKRFLEX (dry run)", "", parameters=params,
                          serial=not builder.options.get_dict().get("withmpi", True), imp_info=builder.impurity_info)
    out = {"gf_writeout": _dry_run_calc(flex, destination / "gf_writeout")}

    structure, voro_calc = find_parent_structure(remote)
    aux = change_struc_imp_aux_wf(structure, builder.impurity_info, metadata={"store_provenance": False})
    host_calc = remote.base.links.get_incoming(node_class=orm.CalcJobNode).one().node
    voro_params = dict(params.get_dict())
    rclustz = voro_calc.inputs.parameters.get_dict().get("RCLUSTZ") if voro_calc is not None else None
    if rclustz is not None:
        voro_params["RCLUSTZ"] = rclustz
    ef = host_calc.outputs.output_parameters.get_dict().get("fermi_energy")
    full = kkrparams()
    for key, value in {**kkrparams.get_KKRcalc_parameter_defaults()[0], **voro_params}.items():
        if value is not None:
            full.set_value(key, value, silent=True)
    if ef is not None:
        full.set_value("EF_SET", ef, silent=True)  # what aiida-kkr's voro_start writes (voronoi ignores it)
    if "voro_params_overwrite" in builder and builder.voro_params_overwrite is not None:
        for key, value in builder.voro_params_overwrite.get_dict().items():
            full.set_value(key, value, silent=True)  # as kkr_imp_wc.run_voroaux does
    voro = get_inputs_voronoi(builder.voronoi, aux, dict(options), "voronoi impurity (dry run)", "",
                              params=orm.Dict(full.get_dict()))
    out["voronoi_impurity"] = _dry_run_calc(voro, destination / "voronoi_impurity")
    return out


def _dry_run_jij(builder: ProcessBuilder, destination: Path) -> Path:
    """The KkrCalculation of kkr_jij_wc (m ∥ z), with the workflow's own parameter logic."""
    from aiida_kkr.tools.common_workfunctions import get_inputs_kkr, get_parent_paranode, update_params
    from aiida_kkr.tools.find_parent import get_calc_from_remote
    from aiida_kkr.workflows import kkr_jij_wc

    remote = builder.remote_data
    wf = dict(kkr_jij_wc.get_wf_defaults(silent=True))
    wf.update({k: v for k, v in builder.wf_parameters.get_dict().items() if v is not None})
    params = get_parent_paranode(remote)
    if "params_kkr_overwrite" in builder and builder.params_kkr_overwrite is not None:
        params = update_params(params, **builder.params_kkr_overwrite.get_dict())
    stub = SimpleNamespace(ctx=AttributeDict({"wf_dict": wf, "parent_calc": get_calc_from_remote(remote)}))
    stub._get_jijrad = lambda: kkr_jij_wc._get_jijrad(stub)
    para_jij, _ = kkr_jij_wc._get_para_jij(stub, params)
    jij_params = update_params(params, **{k: v for k, v in para_jij.get_dict().items() if v is not None})
    calc = get_inputs_kkr(builder.kkr, remote, _calc_options(builder.options.get_dict()), "Jij (dry run)", "",
                          parameters=jij_params, serial=not builder.options.get_dict().get("withmpi", True))
    return _dry_run_calc(calc, destination)


def read_inputcard(path: str | Path) -> dict[str, Any]:
    """The keywords of a JuKKR ``inputcard`` (masci-tools' reader), upper-case keys."""
    from masci_tools.io.kkr_params import kkrparams

    params = kkrparams()
    params.read_keywords_from_inputcard(inputcard=str(path))
    return {k: v for k, v in params.get_dict().items() if v is not None}


def read_scoef(path: str | Path) -> np.ndarray:
    """The impurity cluster of a ``scoef`` file: rows x, y, z (alat), layer, Z, distance (alat)."""
    lines = Path(path).read_text().split("\n")
    n = int(lines[0].split()[0])
    return np.array([[float(x) for x in ln.split()] for ln in lines[1:1 + n]])
