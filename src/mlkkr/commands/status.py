"""``mlkkr status``: like ``verdi status``, for the profile, its services and the hub."""

from __future__ import annotations

import sys

import click

from mlkkr.commands._common import emit, json_option

SYMBOL = {"up": "✔", "down": "✘", "warning": "⏺", "skipped": "–"}


@click.command("status")
@click.option("--hub", "hub_url", metavar="URL",
              help="Hub to check (default: $JUPYTERHUB_API_URL inside a user server; else skipped).")
@json_option
def status(hub_url, as_json):
    """Report profile, storage, broker, daemon and hub; exit 1 when one is down."""
    from mlkkr.aiida.status import as_dict, collect, exit_code

    checks = collect(hub_url)
    emit(as_dict(checks), as_json,
         lambda _: "\n".join(f" {SYMBOL[c.state]} {c.name + ':':<9} {c.detail}" for c in checks))
    sys.exit(exit_code(checks))
