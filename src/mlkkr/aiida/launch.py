"""Launching mlkkr work chains from Python or the CLI: resolve the computer and code, check, submit.

Everything a user can get wrong is checked here, before a node is stored or a process submitted:
the computer (exists, configured), the code (exists, on that computer), the dataset size and batch,
the options of the ``mlkkr`` commands the jobs will run, the training data.

The code is the ``mlkkr`` executable of an installed environment on the computer (an
``InstalledCode``, label ``mlkkr`` by default). On a computer reached through the ``core.local``
transport (this machine, or a local scheduler such as a single-node Slurm) it is created on first
use, pointing at this environment's ``mlkkr``; on a remote computer set it up once with
``verdi code create core.code.installed --label mlkkr --computer C --filepath-executable …/bin/mlkkr``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.common.exceptions import MultipleObjectsError, NotExistent
from aiida.engine import ProcessBuilder

from mlkkr.errors import InputError, ServiceError

CODE_LABEL = "mlkkr"


def load_user_profile(profile: str | None = None) -> Any:
    """Load the named (or default) AiiDA profile; ServiceError with what to do when there is none."""
    from aiida import load_profile
    from aiida.common.exceptions import MissingConfigurationError, ProfileConfigurationError

    try:
        return load_profile(profile, allow_switch=True)
    except (MissingConfigurationError, ProfileConfigurationError) as exc:
        raise ServiceError(f"no AiiDA profile {profile or '(default)'} ({exc}); run `mlkkr setup` first") from None


def resolve_computer(label: str | orm.Computer) -> orm.Computer:
    """A configured computer by label; InputError (field ``--computer``) listing the known ones."""
    if isinstance(label, orm.Computer):
        computer = label
    else:
        try:
            computer = orm.load_computer(label)
        except (NotExistent, MultipleObjectsError):
            user = orm.User.collection.get_default()
            known = sorted(c.label for c in orm.Computer.collection.all() if c.is_user_configured(user))
            raise InputError("--computer", label, allowed=known or "none: set one up with `verdi computer setup`",
                             reason=f"no such computer {label!r}") from None
    if not computer.is_user_configured(orm.User.collection.get_default()):
        raise InputError("--computer", computer.label, reason="not configured: run `verdi computer configure "
                         f"{computer.transport_type} {computer.label}`")
    return computer


def local_mlkkr_executable() -> str:
    """This environment's ``mlkkr`` script."""
    candidate = Path(sys.executable).with_name("mlkkr")
    found = str(candidate) if candidate.exists() else shutil.which("mlkkr")
    if not found:
        raise ServiceError("the `mlkkr` executable of this environment was not found; reinstall mlkkr")
    return found


def resolve_code(computer: orm.Computer, code: str | orm.AbstractCode | None = None) -> orm.AbstractCode:
    """The ``mlkkr`` code on ``computer``: the one named, or ``mlkkr@<computer>`` (created for local transports)."""
    if isinstance(code, orm.AbstractCode):
        node = code
    elif code:
        try:
            node = orm.load_code(code)
        except (NotExistent, MultipleObjectsError, ValueError):
            known = sorted(c.full_label for (c,) in orm.QueryBuilder().append(orm.AbstractCode).iterall()
                           if isinstance(c, orm.AbstractCode))
            raise InputError("--code", code, allowed=known or "none", reason=f"no such code {code!r}") from None
    else:
        try:
            return orm.load_code(f"{CODE_LABEL}@{computer.label}")
        except NotExistent:
            pass
        if computer.transport_type != "core.local":
            raise InputError("--code", None, reason=f"computer {computer.label!r} has no code {CODE_LABEL!r}; set "
                             "it up once: verdi code create core.code.installed --label mlkkr --computer "
                             f"{computer.label} --filepath-executable <environment>/bin/mlkkr")
        node = orm.InstalledCode(computer=computer, filepath_executable=local_mlkkr_executable(), label=CODE_LABEL,
                                 description="the mlkkr command of this environment (made by mlkkr run)")
        return node.store()
    if node.computer is None or node.computer.uuid != computer.uuid:
        raise InputError("--code", node.full_label, reason=f"runs on {getattr(node.computer, 'label', None)!r}, "
                         f"not on --computer {computer.label!r}")
    return node


def job_options(walltime: int | None = None, queue: str | None = None, account: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """``metadata.options`` of the jobs: walltime (s), queue, account, anything else as given."""
    options: dict[str, Any] = dict(extra)
    if walltime is not None:
        if walltime < 1:
            raise InputError("--walltime", walltime, allowed="a positive number of seconds")
        options["max_wallclock_seconds"] = int(walltime)
    if queue:
        options["queue_name"] = queue
    if account:
        options["account"] = account
    return options


def dataset_builder(kind: str, n: int, batch: int, computer: str | orm.Computer, *,
                    code: str | orm.AbstractCode | None = None, seed: int = 0,
                    parameters: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                    max_concurrent: int = 0, max_iterations: int = 3, group: str | None = None) -> ProcessBuilder:
    """A checked :class:`~mlkkr.aiida.workflows.DatasetWorkChain` builder (nothing stored yet but the code)."""
    from mlkkr.aiida.workflows import DatasetWorkChain, validate_dataset_inputs

    parameters = dict(parameters or {})
    if isinstance(n, int) and not isinstance(n, bool) and n < 1:
        raise InputError("--n", n, allowed="an integer >= 1 (number of records)")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch < 1:
        raise InputError("--batch", batch, allowed="an integer >= 1 (records per job)")
    validate_dataset_inputs(kind, n, batch, seed, parameters, max_concurrent)
    if max_iterations < 1:
        raise InputError("max_iterations", max_iterations, allowed="an integer >= 1")
    if group is not None and not group.strip():
        raise InputError("--group", group, reason="empty group label")
    comp = resolve_computer(computer)
    builder = DatasetWorkChain.get_builder()
    builder.kind = orm.Str(kind)
    builder.n = orm.Int(n)
    builder.batch_size = orm.Int(batch)
    builder.seed = orm.Int(seed)
    builder.parameters = orm.Dict(parameters)
    builder.options = orm.Dict(options or {})
    builder.max_concurrent = orm.Int(max_concurrent)
    builder.max_iterations = orm.Int(max_iterations)
    if group:
        builder.group_label = orm.Str(group)
    builder.code = resolve_code(comp, code)
    builder.metadata.label = f"{kind} dataset n={n}"
    return builder


def group_datasets(group: str) -> dict[str, Any]:
    """The datasets of a group by name (``batch_xxxx`` or ``d<pk>``), in pk order; InputError if none."""
    from mlkkr.aiida.nodes import DatasetData

    try:
        g = orm.load_group(group)
    except (NotExistent, MultipleObjectsError):
        raise InputError("--group", group, reason="no such group") from None
    nodes = sorted((n for n in g.nodes if isinstance(n, DatasetData)), key=lambda n: n.pk)
    if not nodes:
        raise InputError("--group", group, reason="holds no mlkkr dataset")
    return {f"d{n.pk}": n for n in nodes}


def training_builder(datasets: dict[str, Any], computer: str | orm.Computer, *,
                     code: str | orm.AbstractCode | None = None, train_parameters: dict[str, Any] | None = None,
                     evaluate_parameters: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                     max_iterations: int = 3) -> ProcessBuilder:
    """A checked :class:`~mlkkr.aiida.workflows.TrainEvaluateWorkChain` builder."""
    from mlkkr.aiida.cli_args import model_command, to_argv
    from mlkkr.aiida.workflows import TrainEvaluateWorkChain

    if not datasets:
        raise InputError("datasets", None, reason="give at least one dataset")
    kinds = {d.kind for d in datasets.values()}
    if len(kinds) != 1:
        raise InputError("datasets", sorted(kinds), reason="all datasets must be of one kind")
    kind = kinds.pop()
    to_argv(model_command(kind, "train_cmd"), train_parameters or {}, "--param")
    to_argv(model_command(kind, "evaluate_cmd"), evaluate_parameters or {}, "--eval-param")
    comp = resolve_computer(computer)
    builder = TrainEvaluateWorkChain.get_builder()
    builder.datasets = datasets
    builder.train_parameters = orm.Dict(train_parameters or {})
    builder.evaluate_parameters = orm.Dict(evaluate_parameters or {})
    builder.options = orm.Dict(options or {})
    builder.max_iterations = orm.Int(max_iterations)
    builder.code = resolve_code(comp, code)
    builder.metadata.label = f"train+evaluate {kind}"
    return builder


def launch(builder: ProcessBuilder, wait: bool = False, timeout: float | None = None) -> orm.ProcessNode:
    """Submit to the daemon (or run here when the profile has no broker); with ``wait``, until it ends."""
    from aiida.engine import run_get_node, submit
    from aiida.manage import get_manager

    profile = get_manager().get_profile()
    if profile is None or profile.process_control_backend is None:
        _, node = run_get_node(builder)
        return node
    node = submit(builder)
    if wait:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not node.is_terminated:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(1)
    return node


def describe(node: orm.ProcessNode) -> dict[str, Any]:
    """PK, UUID, label, state and (when done) outputs of a process, for ``--json``."""
    state = node.process_state.value if node.process_state else None
    out: dict[str, Any] = {"pk": node.pk, "uuid": node.uuid, "process_label": node.process_label,
                           "label": node.label, "state": state, "exit_status": node.exit_status,
                           "exit_message": node.exit_message}
    if node.is_finished_ok:
        outputs: dict[str, Any] = {}
        for link in node.base.links.get_outgoing(link_type=_return_types()).all():
            outputs[link.link_label] = link.node.pk
        out["outputs"] = outputs
        group = node.base.extras.get("group", None)
        if group:
            out["group"] = group
    return out


def _return_types() -> tuple[Any, ...]:
    from aiida.common.links import LinkType

    return (LinkType.RETURN, LinkType.CREATE)
