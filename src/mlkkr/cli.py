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
    "engine": ("mlkkr.commands.engine:engine", "Run the model Green-function engine (exchange, embed)."),
    "data": ("mlkkr.commands.data:data", "Build datasets (exchange pairs, impurity potentials) as HDF5."),
    "train": ("mlkkr.commands.ml:train", "Train an ML model (exchange: e3nn; potential: JL ridge)."),
    "predict": ("mlkkr.commands.ml:predict", "Predict with a trained model."),
    "evaluate": ("mlkkr.commands.ml:evaluate", "Evaluate a trained model on a dataset (errors, parity plots)."),
    "archive": ("mlkkr.commands.archive:archive", "Publish, list, verify, import AiiDA archives (shared store)."),
    "run": ("mlkkr.commands.run:run", "Run datasets and trainings as AiiDA work chains on a computer."),
    "jukkr": ("mlkkr.commands.jukkr:jukkr", "Build and check the JuKKR codes (voronoi, KKRhost, KKRimp)."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use.

    ``lazy_commands`` maps a name to ``("module:attribute", "one-line help")``.
    """

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands if lazy_commands is not None else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy_commands) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.lazy_commands:
            return None
        module_name, attr = self.lazy_commands[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name][1]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mlkkr")
def main() -> None:
    """mlkkr: KKR Green-function simulations and machine learning on AiiDA."""


if __name__ == "__main__":  # pragma: no cover
    main()
