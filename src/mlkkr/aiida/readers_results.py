"""Any finished aiida-kkr result → mlkkr records: the KKRimp potentials and J_ij found among some nodes.

Used by ``mlkkr data from-archive`` (the nodes of an archive file, opened read-only) and ``mlkkr data
from-group`` (the nodes of a Group of the profile). Each candidate workflow is read by its own reader
— :func:`mlkkr.aiida.readers_kkrimp.radial_embedding` for ``kkr_imp_wc`` / ``combine_imps_wc`` (an
impurity pair) / ``kkr_imp_sub_wc``
(the shape functions and host potentials found through the provenance wherever aiida-kkr put them),
:func:`mlkkr.aiida.readers_jij.pairs_from_workflow` for ``kkr_jij_wc`` — and a candidate that cannot
be used is *reported*, not fatal: the report names every node looked at and why it was skipped.
Unconverged impurity potentials are flagged and skipped unless ``include_unconverged``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from aiida import orm

from mlkkr.errors import InputError

KINDS = ("exchange", "potential", "auto")
IMP_LABELS = ("kkr_imp_wc", "combine_imps_wc", "kkr_imp_sub_wc")


def candidates(nodes: list[orm.Node]) -> dict[str, list[orm.WorkflowNode]]:
    """The workflows among ``nodes`` that a reader takes, by kind (a kkr_imp_sub_wc run by a kkr_imp_wc or
    combine_imps_wc that is also there counts once, as its caller)."""
    from mlkkr.aiida.readers_jij import JIJ_WORKFLOWS

    wfs = [n for n in nodes if isinstance(n, orm.WorkflowNode)]
    uuids = {n.uuid for n in wfs}
    imp = [n for n in wfs if n.process_label in IMP_LABELS
           and not (n.process_label == "kkr_imp_sub_wc" and n.caller is not None and n.caller.uuid in uuids)]
    jij = [n for n in wfs if n.process_label in JIJ_WORKFLOWS]
    return {"potential": sorted(imp, key=lambda n: n.ctime), "exchange": sorted(jij, key=lambda n: n.ctime)}


def choose_kind(kind: str, found: dict[str, list[orm.WorkflowNode]], where: str) -> str:
    """``kind`` itself, or for ``auto`` the one kind present; InputError names --kind otherwise."""
    if kind not in KINDS:
        raise InputError("--kind", kind, allowed=list(KINDS))
    if kind != "auto":
        return kind
    present = [k for k in ("potential", "exchange") if found[k]]
    if len(present) == 1:
        return present[0]
    if not present:
        return "potential"  # nothing of either: read() reports what it looked at
    raise InputError("--kind", kind, reason=f"{where} holds both: {len(found['potential'])} impurity and "
                     f"{len(found['exchange'])} Jij workflows; choose --kind potential or --kind exchange")


def read(nodes: list[orm.Node], kind: str = "auto", *, env_cutoff: float = 6.0, include_unconverged: bool = False,
         host: str | None = None, where: str = "the nodes") -> tuple[list[Any], dict[str, Any]]:
    """Records of ``kind`` from ``nodes`` and a report: {"kind", "read": [...], "skipped": [...]}.

    InputError when nothing usable was found; its message lists every node looked at and why.
    """
    from mlkkr.aiida.readers_jij import MAX_CHARGE_ERROR, pairs_from_workflow
    from mlkkr.aiida.readers_kkrimp import radial_embedding

    found = candidates(nodes)
    kind = choose_kind(kind, found, where)
    records: list[Any] = []
    report: dict[str, Any] = {"kind": kind, "read": [], "skipped": []}
    for wf in found[kind]:
        entry = {"pk": wf.pk, "uuid": wf.uuid, "process": wf.process_label, "label": wf.label}
        if not wf.is_finished_ok:
            state = wf.process_state.value if wf.process_state else "unknown"
            report["skipped"].append({**entry, "reason": f"did not finish ok ({state}, exit status {wf.exit_status})"})
            continue
        try:
            if kind == "potential":
                rec = radial_embedding(wf, host=host)
                if not rec.converged and not include_unconverged:
                    report["skipped"].append({**entry, "reason": f"KKRimp not converged (rms {rec.rms:.3g}); "
                                                                 "--include-unconverged to read it"})
                    continue
                rec.provenance["converged"] = rec.converged
                records.append(rec)
                report["read"].append({**entry, "records": 1, "impurity": rec.impurity, "atoms": len(rec.z),
                                       "converged": rec.converged})
            else:
                got = pairs_from_workflow(wf, env_cutoff)
                charge = got[0].provenance.get("charge_error") if got else None
                if charge is not None and charge > MAX_CHARGE_ERROR and not include_unconverged:
                    report["skipped"].append({**entry, "reason": f"its KKRhost runs are {charge:.3g} electrons from "
                                              f"neutral (> {MAX_CHARGE_ERROR}): the potential is not consistent with "
                                              "their solver; --include-unconverged to read it"})
                    continue
                records.extend(got)
                report["read"].append({**entry, "records": len(got)})
        except (InputError, KeyError, AttributeError, ValueError) as exc:
            report["skipped"].append({**entry, "reason": str(exc)})
        except (OSError, zipfile.BadZipFile) as exc:  # a file of the repository missing or damaged
            report["skipped"].append({**entry, "reason": f"a file it needs cannot be read ({type(exc).__name__}: "
                                                         f"{exc})"})
    if not records:
        looked = [f"{s['process']}<{s['pk']}>: {s['reason']}" for s in report["skipped"]]
        others = len([n for n in nodes if isinstance(n, orm.ProcessNode)])
        raise InputError("data", where, reason=f"no usable {kind} result in {where}: "
                         + ("; ".join(looked) if looked else
                            f"no {' or '.join(IMP_LABELS) if kind == 'potential' else 'kkr_jij_wc'} workflow "
                            f"among its {len(nodes)} nodes ({others} processes)"))
    return records, report


def group_nodes(label: str) -> list[orm.Node]:
    """The nodes of Group ``label``; InputError naming GROUP if there is none."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return list(orm.load_group(label).nodes)
    except (NotExistent, MultipleObjectsError):
        raise InputError("GROUP", label, reason="no such group in this profile (verdi group list)") from None


def archive_nodes() -> list[orm.Node]:
    """Every process node of the loaded (archive) profile."""
    return [n for (n,) in orm.QueryBuilder().append(orm.ProcessNode, project="*").iterall()]


def read_archive(path: str | Path, kind: str = "auto", **options: Any) -> tuple[list[Any], dict[str, Any]]:
    """:func:`read` on the process nodes of an archive file, opened read-only (nothing is imported into the
    user's profile); every record's provenance names the archive."""
    from mlkkr.aiida.readers_jij import archive_profile

    with archive_profile(path):
        records, report = read(archive_nodes(), kind, where=f"archive {Path(path).name}", **options)
    for rec in records:
        rec.provenance["archive"] = Path(path).name
    return records, report


def read_jij_archive(path: str | Path, env_cutoff: float = 6.0) -> tuple[list[Any], dict[str, Any]]:
    """Every exchange pair of every finished Jij workflow in an archive; and a summary (workflows, counts)."""
    pairs, report = read_archive(path, "exchange", env_cutoff=env_cutoff)
    return pairs, {"archive": Path(path).name,
                   "workflows": [{"uuid": w["uuid"], "label": w["process"], "pairs": w["records"]}
                                 for w in report["read"]]}
