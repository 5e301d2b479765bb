"""The ``mlkkr`` command line, in the style of ``verdi``.

Sub-commands live in :mod:`mlkkr.commands` (one module per family) and are imported only when they
are called, so ``mlkkr --version`` or ``mlkkr --help`` never pay for importing AiiDA or torch.
A family is registered by adding one line to :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib

import click

from mlkkr import __version__

#: name -> (module:attribute, one-line help shown by ``mlkkr --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": ("mlkkr.commands.setup:setup", "Create or repair this user's AiiDA profile."),
    "status": ("mlkkr.commands.status:status", "Report profile, storage, broker, daemon and hub."),
    "hub": ("mlkkr.commands.hub:hub", "Start the local JupyterHub (the embedded default)."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target = COMMANDS[cmd_name][0]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mlkkr")
def main() -> None:
    """mlkkr: KKR Green-function simulations and machine learning on AiiDA."""


if __name__ == "__main__":  # pragma: no cover
    main()
