"""The JuKKR codes of a user's profile: ``voronoi@localhost``, ``kkrhost@localhost``, ``kkrimp@localhost``.

Made at spawn (:func:`mlkkr.aiida.profile.ensure_profile`, the same path in the local, container and
chart modes) from the installation that :mod:`mlkkr.jukkr.build` made (``$MLKKR_JUKKR_PREFIX``, else
this environment's ``opt/jukkr``). Each is an ``InstalledCode`` of aiida-kkr's CalcJob plugin
(``kkr.voro``, ``kkr.kkr``, ``kkr.kkrimp``), serial (``with_mpi`` False: the build has no MPI), whose
prepend text sets an unlimited stack and one thread (:func:`mlkkr.jukkr.run.prepend_text`), and for
voronoi links ``ElementDataBase`` into the job folder.

Idempotent: a code that already has the wanted executable, plugin, computer and prepend text is left
alone; one that differs (moved prefix, edited prepend text, wrong plugin) is *retired* — relabelled
``<label>-retired-<pk>`` and hidden, so that calculations that used it keep their provenance — and a
new one takes the label. There is never more than one visible code per label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlkkr import jukkr
from mlkkr.jukkr.build import Installation, find_installation
from mlkkr.jukkr.run import prepend_text

COMPUTER = "localhost"


@dataclass(frozen=True)
class CodeSpec:
    label: str
    plugin: str
    executable: str
    prepend_text: str

    @property
    def full_label(self) -> str:
        return f"{self.label}@{COMPUTER}"


def wanted(installation: Installation) -> list[CodeSpec]:
    """The three codes the installation should give a profile."""
    specs = []
    for code, (_, _, plugin) in jukkr.CODES.items():
        database = installation.element_database if code == "voronoi" else None
        specs.append(CodeSpec(code, plugin, str(installation.executable(code)), prepend_text(database)))
    return specs


def _mismatch(node: Any, spec: CodeSpec, computer: Any) -> str:
    from aiida import orm

    if not isinstance(node, orm.InstalledCode):
        return f"is a {type(node).__name__}, not an installed code"
    checks = ((node.default_calc_job_plugin, spec.plugin, "plugin"),
              (str(node.filepath_executable), spec.executable, "executable"),
              ((node.prepend_text or "").strip(), spec.prepend_text, "prepend text"),
              (node.computer.uuid, computer.uuid, "computer"),
              (bool(node.with_mpi), False, "with_mpi"))
    return next((f"has another {what} ({have!r})" for have, want, what in checks if have != want), "")


def ensure_codes(installation: Installation | None = None, computer_label: str = COMPUTER) -> list[str]:
    """Make or repair the JuKKR codes on ``computer_label``; returns what was done (empty: all in order).

    Without an intact JuKKR installation nothing is changed and the one action says why.
    """
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    inst = installation or find_installation()
    if inst is None:
        return ["JuKKR codes not set up: no JuKKR build (run `mlkkr jukkr build`)"]
    broken = [p for p in inst.problems() if "SHA-256" not in p]  # spawn path: existence, not checksums
    if broken:
        return [f"JuKKR codes not set up: the installation in {inst.prefix} is broken ({'; '.join(broken)})"]
    try:
        computer = orm.load_computer(computer_label)
    except NotExistent:
        return [f"JuKKR codes not set up: no computer {computer_label!r}"]
    actions = []
    for spec in wanted(inst):
        qb = orm.QueryBuilder().append(orm.Computer, filters={"uuid": computer.uuid}, tag="c")
        qb.append(orm.AbstractCode, with_computer="c", filters={"label": spec.label}, project="*")
        existing = [n for (n,) in qb.iterall() if not n.is_hidden]
        keep = None
        for node in existing:
            why = _mismatch(node, spec, computer)
            if not why and keep is None:
                keep = node
                continue
            node.label = f"{spec.label}-retired-{node.pk}"
            node.description = f"retired by mlkkr: {why or 'a duplicate'}. {node.description or ''}".strip()
            node.is_hidden = True
            actions.append(f"retired code {spec.full_label}<{node.pk}> ({why or 'duplicate'})")
        if keep is None:
            node = orm.InstalledCode(computer=computer, filepath_executable=spec.executable,
                                     default_calc_job_plugin=spec.plugin, label=spec.label, with_mpi=False,
                                     prepend_text=spec.prepend_text,
                                     description=f"JuKKR {jukkr.SHORT} {jukkr.CODES[spec.label][0]} "
                                                 f"(mlkkr jukkr build, {inst.prefix})").store()
            actions.append(f"created code {spec.full_label}<{node.pk}>")
    return actions


def report(installation: Installation | None = None) -> dict[str, Any]:
    """The state of the codes in the loaded profile, for ``mlkkr status``: ``{"ok", "detail", "codes"}``."""
    from aiida import orm

    inst = installation or find_installation()
    if inst is None:
        return {"ok": False, "detail": "no JuKKR build (run `mlkkr jukkr build`)", "codes": {}}
    try:
        computer = orm.load_computer(COMPUTER)
    except Exception:  # noqa: BLE001 - reported
        return {"ok": False, "detail": f"no computer {COMPUTER!r} (run `mlkkr setup`)", "codes": {}}
    codes, bad = {}, []
    for spec in wanted(inst):
        qb = orm.QueryBuilder().append(orm.Computer, filters={"uuid": computer.uuid}, tag="c")
        qb.append(orm.AbstractCode, with_computer="c", filters={"label": spec.label}, project="*")
        nodes = [n for (n,) in qb.iterall() if not n.is_hidden]
        why = "missing" if not nodes else "duplicated" if len(nodes) > 1 else _mismatch(nodes[0], spec, computer)
        codes[spec.full_label] = why or "ok"
        if why:
            bad.append(f"{spec.full_label} {why}")
    problems = inst.problems()
    ok = not bad and not problems
    detail = (f"{', '.join(codes)} → {inst.prefix} ({inst.manifest.get('blas')} BLAS)" if ok else
              "; ".join(bad + problems) + " (run `mlkkr setup`)")
    return {"ok": ok, "detail": detail, "codes": codes}
