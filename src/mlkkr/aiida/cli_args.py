"""Translate a parameters dictionary into the command line of an ``mlkkr`` sub-command, checked early.

The CalcJobs run ``mlkkr …`` on the computer. Their ``parameters`` input is a plain dictionary of that
command's options by their Python names (``{"n": 100, "env_radius": 1.5, "baseline": False}``). The
options are read from the click command itself, so a misspelt or reserved key, or a value of the wrong
type, fails here — before anything is submitted — with the allowed names, and the list follows the
command when its authors add options.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from mlkkr.errors import InputError

#: command (as run on the computer, after ``mlkkr``) -> "module:attribute" of its click command
COMMANDS: dict[str, str] = {
    "data exchange": "mlkkr.commands.data:exchange",
    "data potential": "mlkkr.commands.data:potential",
    "engine exchange": "mlkkr.commands.engine:exchange",
    "engine embed": "mlkkr.commands.engine:embed",
}
#: options the CalcJobs set themselves (file names, output format, progress bars, restarts)
RESERVED = {"output", "as_json", "progress", "data_path", "resume", "model", "input_file", "input_path"}


def load_command(spec: str) -> click.Command:
    """The click command behind ``"module:attribute"``."""
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def engine_command(command: str) -> click.Command:
    """The click command of an engine/data command name; InputError for an unknown one."""
    if command not in COMMANDS:
        raise InputError("command", command, allowed=sorted(COMMANDS))
    return load_command(COMMANDS[command])


def model_command(kind: str, which: str) -> click.Command:
    """``train_cmd``, ``evaluate_cmd`` or ``predict_cmd`` of model kind ``kind``."""
    from mlkkr.commands.ml import KINDS

    if kind not in KINDS:
        raise InputError("kind", kind, allowed=sorted(KINDS))
    try:
        module = importlib.import_module(KINDS[kind])
    except ImportError as exc:
        raise InputError("kind", kind, reason=f"the {kind} model commands are not installed ({exc})") from None
    return getattr(module, which)


def options_of(command: click.Command) -> dict[str, click.Option]:
    """The command's options by Python name, without the reserved ones."""
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name not in RESERVED}


def to_argv(command: click.Command, parameters: dict[str, Any], field: str = "parameters") -> list[str]:
    """Command-line arguments for ``parameters`` (sorted by name: the same dict gives the same argv).

    Flags: ``True`` gives the flag, ``False`` its ``--no-`` form where it has one (else nothing).
    ``None`` values are left out (the command's default applies).
    """
    options = options_of(command)
    argv: list[str] = []
    for key in sorted(parameters):
        value = parameters[key]
        if key not in options:
            raise InputError(f"{field}.{key}", value, allowed=sorted(options))
        if value is None:
            continue
        opt = options[key]
        long = next((o for o in opt.opts if o.startswith("--")), opt.opts[0])
        if opt.is_flag:
            if not isinstance(value, bool):
                raise InputError(f"{field}.{key}", value, allowed="true or false")
            if value:
                argv.append(long)
            elif opt.secondary_opts:
                argv.append(opt.secondary_opts[0])
            continue
        try:
            opt.type.convert(value, opt, None)
        except click.BadParameter as exc:
            raise InputError(f"{field}.{key}", value, reason=exc.format_message()) from None
        if isinstance(value, bool) or isinstance(value, list | tuple | dict):
            raise InputError(f"{field}.{key}", value, reason=f"expected a single {opt.type.name} value")
        argv += [long, str(value)]
    return argv
