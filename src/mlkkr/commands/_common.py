"""Helpers shared by the CLI command modules: JSON/human output and error reporting."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from mlkkr.errors import InputError, ServiceError

json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or through ``human`` (default: key: value lines)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif human is not None:
        click.echo(human(data))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            click.echo(f"{key:<{width}}  {value}")
    else:
        click.echo(str(data))


def handle_errors(func: Callable) -> Callable:
    """Turn mlkkr's own errors into a clear message on stderr and a non-zero exit code.

    ``InputError`` exits with 2 (bad input), ``ServiceError`` with 3 (something to start or install).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except ServiceError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(3)

    return wrapper
