"""``mlkkr train | predict | evaluate``: one entry per model kind, dispatched lazily.

A trained model is a folder holding ``model.json`` (at least ``{"kind": "exchange" | "potential",
"mlkkr_version": ...}`` plus hyper-parameters, species, metrics and the checksum of the training
data) and its weights. ``evaluate`` reads the kind from ``model.json`` and hands over to that kind's
command; ``train`` and ``predict`` have one sub-command per kind.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from mlkkr.cli import LazyGroup
from mlkkr.errors import InputError

#: model kind -> module with the commands ``train_cmd``, ``predict_cmd`` and ``evaluate_cmd``
KINDS = {
    "exchange": "mlkkr.commands.ml_exchange",
    "potential": "mlkkr.commands.ml_potential",
    "potential-radial": "mlkkr.commands.ml_potential_radial",
}
HELP = {
    "exchange": "exchange tensors J_ij (e3nn equivariant network)",
    "potential": "impurity potentials dV(r) (Jacobi-Legendre ridge)",
    "potential-radial": "all-electron KKRimp dV(r) on the radial mesh (real JuKKR data)",
}


@click.group("train", cls=LazyGroup,
             lazy_commands={k: (f"{m}:train_cmd", f"Train a model of {HELP[k]}.") for k, m in KINDS.items()})
def train():
    """Train an ML model on a dataset (HDF5 made by `mlkkr data ...`)."""


@click.group("predict", cls=LazyGroup,
             lazy_commands={k: (f"{m}:predict_cmd", f"Predict {HELP[k]}.") for k, m in KINDS.items()})
def predict():
    """Predict with a trained model."""


def model_kind(model: str | Path) -> str:
    """The ``kind`` recorded in a model folder's ``model.json``; InputError when it is not a model."""
    from mlkkr.models.files import read_meta

    kind = read_meta(model).get("kind")
    if kind not in KINDS:
        raise InputError("model.json:kind", kind, allowed=KINDS)
    return kind


@click.command("evaluate", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("model", required=False)
@click.pass_context
def evaluate(ctx, model):
    """Evaluate MODEL on a dataset: `mlkkr evaluate MODEL --data D.h5 [--json]`.

    The options are those of the model's kind: `mlkkr evaluate MODEL --help` lists them.
    """
    if model is None or model in ("-h", "--help"):
        click.echo(ctx.get_help())
        ctx.exit(0)
    try:
        kind = model_kind(model)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    command = importlib.import_module(KINDS[kind]).evaluate_cmd
    args = ["--help"] if {"-h", "--help"} & set(ctx.args) else [model, *ctx.args]
    return ctx.invoke(command, **command.make_context("evaluate", args, parent=ctx.parent).params)
