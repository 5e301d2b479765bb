"""aiida-kkr launchers: ready-to-submit builders for the JuKKR workflows, checked by dry runs.

Builders (aiida-kkr 2.3 work chains), every input checked before anything is stored or submitted
(:class:`~mlkkr.errors.InputError` names the field):

* :func:`host_scf_builder` — ``kkr_scf_wc`` (``kkr.scf``): voronoi starting potential + KKRhost
  self-consistency of a bulk (or 2D) structure.
* :func:`impurity_builder` — ``kkr_imp_wc`` (``kkr.imp``): host Green-function write-out (KKRFLEX),
  auxiliary voronoi of the impurity, KKRimp self-consistency of an impurity embedded in a converged host.
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
                 queue_name: str = "", withmpi: bool = True, custom_scheduler_commands: str = "",
                 **extra: Any) -> dict[str, Any]:
    """The ``options`` input of the aiida-kkr work chains (scheduler resources and settings)."""
    if not isinstance(max_wallclock_seconds, int) or max_wallclock_seconds < 1:
        raise InputError("max_wallclock_seconds", max_wallclock_seconds, allowed="a positive integer (s)")
    return {"resources": dict(resources or {"num_machines": 1}), "max_wallclock_seconds": max_wallclock_seconds,
            "queue_name": queue_name, "withmpi": withmpi, "custom_scheduler_commands": custom_scheduler_commands,
            **extra}


@dataclass(frozen=True)
class Impurity:
    """One substitutional impurity: ``element`` on host site ``site``, embedded in a cluster of ``radius`` Å."""

    element: str
    site: int = 0
    radius: float = 4.0

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

    def check(self, structure: orm.StructureData) -> None:
        _ = self.z
        if isinstance(self.site, bool) or not isinstance(self.site, int) or not 0 <= self.site < len(structure.sites):
            raise InputError("impurity.site", self.site, allowed=f"a site index 0 … {len(structure.sites) - 1}")
        if not 0 < self.radius <= 20:
            raise InputError("impurity.radius", self.radius, allowed="a cluster radius in Å, 0 < r ≤ 20")


# ------------------------------------------------------------------------------------------- builders


def host_scf_builder(structure: orm.StructureData, voronoi: orm.AbstractCode | str, kkr: orm.AbstractCode | str, *,
                     parameters: dict[str, Any] | None = None, wf_parameters: dict[str, Any] | None = None,
                     options: dict[str, Any] | None = None, label: str = "") -> ProcessBuilder:
    """``kkr_scf_wc`` from a structure: voronoi starting potential, then KKRhost to self-consistency.

    ``parameters``: KKR parameters (``LMAX``, ``NSPIN``, ``BZDIVIDE`` …; aiida-kkr's defaults fill the rest);
    ``wf_parameters``: overrides of ``kkr_scf_wc.get_wf_defaults()``; ``options``: :func:`options_dict`.
    """
    from aiida_kkr.workflows import kkr_scf_wc

    params = check_parameters(parameters)
    check_structure(structure, params)
    wf_default, _ = kkr_scf_wc.get_wf_defaults(silent=True)
    wf = _merge_known(dict(wf_default), wf_parameters, "wf_parameters")
    builder = kkr_scf_wc.get_builder()
    builder.structure = structure
    builder.voronoi = resolve_code(voronoi, VORONOI, "voronoi")
    builder.kkr = resolve_code(kkr, KKRHOST, "kkr")
    builder.calc_parameters = orm.Dict(_with_kkr_defaults(params))
    builder.wf_parameters = orm.Dict(wf)
    builder.options = orm.Dict(options or options_dict())
    builder.metadata.label = label or f"host SCF {structure.get_formula()}"
    return builder


def impurity_builder(host: orm.Node, impurity: Impurity, kkr: orm.AbstractCode | str,
                     voronoi: orm.AbstractCode | str, kkrimp: orm.AbstractCode | str, *,
                     wf_parameters: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                     params_kkr_overwrite: dict[str, Any] | None = None, label: str = "") -> ProcessBuilder:
    """``kkr_imp_wc``: embed ``impurity`` in the converged host ``host`` (kkr_scf_wc, KkrCalculation or remote)."""
    from aiida_kkr.tools.find_parent import find_parent_structure
    from aiida_kkr.workflows import kkr_imp_wc

    remote = host_remote(host)
    structure, _ = find_parent_structure(remote)
    impurity.check(structure)
    _, wf_default, voro_default = kkr_imp_wc.get_wf_defaults(silent=True)
    builder = kkr_imp_wc.get_builder()
    builder.remote_data_host = remote
    builder.kkr = resolve_code(kkr, KKRHOST, "kkr")
    builder.voronoi = resolve_code(voronoi, VORONOI, "voronoi")
    builder.kkrimp = resolve_code(kkrimp, KKRIMP, "kkrimp")
    builder.impurity_info = orm.Dict(impurity.impurity_info())
    builder.wf_parameters = orm.Dict(_merge_known(dict(wf_default), wf_parameters, "wf_parameters"))
    builder.voro_aux_parameters = orm.Dict(dict(voro_default))
    builder.options = orm.Dict(options or options_dict())
    if params_kkr_overwrite:
        builder.params_kkr_overwrite = orm.Dict(check_parameters(params_kkr_overwrite, "params_kkr_overwrite"))
    builder.metadata.label = label or f"{impurity.element} in {structure.get_formula()} (site {impurity.site})"
    return builder


def jij_builder(host: orm.Node, kkr: orm.AbstractCode | str, *, radius: float = 5.0,
                sites_i: list[int] | None = None, sites_j: list[int] | None = None,
                accuracy: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                params_kkr_overwrite: dict[str, Any] | None = None, label: str = "") -> ProcessBuilder:
    """``kkr_jij_wc``: exchange interactions up to ``radius`` Å of the converged host ``host``."""
    from aiida_kkr.tools.find_parent import find_parent_structure
    from aiida_kkr.workflows import kkr_jij_wc

    remote = host_remote(host)
    structure, _ = find_parent_structure(remote)
    _check_jij_parent(remote)
    if not 0 < radius <= 30:
        raise InputError("radius", radius, allowed="a Jij radius in Å, 0 < r ≤ 30")
    for field, sites in (("sites_i", sites_i), ("sites_j", sites_j)):
        if sites is not None and not all(isinstance(s, int) and 0 <= s < len(structure.sites) for s in sites):
            raise InputError(field, sites, allowed=f"site indices 0 … {len(structure.sites) - 1}")
    if accuracy and "kmesh" in accuracy:
        raise InputError("accuracy.kmesh", accuracy["kmesh"],
                         reason="aiida-kkr 2.3's kkr_jij_wc fails with numpy 2 on kmesh (np.product); set BZDIVIDE "
                                "in params_kkr_overwrite instead")
    wf = dict(kkr_jij_wc.get_wf_defaults(silent=True))
    wf.update({"jijrad_ang": float(radius), "jijsite_i": sites_i, "jijsite_j": sites_j})
    if accuracy:
        wf["accuracy"] = {**wf["accuracy"], **accuracy}
    builder = kkr_jij_wc.get_builder()
    builder.remote_data = remote
    builder.kkr = resolve_code(kkr, KKRHOST, "kkr")
    builder.wf_parameters = orm.Dict(wf)
    builder.options = orm.Dict(options or options_dict())
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


def _dry_run_host_scf(builder: ProcessBuilder, destination: Path) -> Path:
    """The voronoi job of kkr_startpot_wc (first iteration): RCLUSTZ from the minimal cluster size."""
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
    calc = get_inputs_voronoi(builder.voronoi, structure, _calc_options(builder.options.get_dict()),
                              "voronoi (dry run)", "", params=orm.Dict(full.get_dict()))
    return _dry_run_calc(calc, destination)


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
        full.set_value("EF_SET", ef, silent=True)
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
