"""``mlkkr setup``: create or repair this user's AiiDA profile (idempotent)."""

from __future__ import annotations

import click

from mlkkr.commands._common import emit, handle_errors, json_option


@click.command("setup")
@click.option("--profile", "name", help="Profile name [env MLKKR_PROFILE; default: the user's name].")
@click.option("--storage", type=click.Choice(["sqlite", "postgres"]), help="[env MLKKR_STORAGE; default sqlite]")
@click.option("--broker", type=click.Choice(["zeromq", "rabbitmq", "none"]),
              help="[env MLKKR_BROKER; default zeromq, which needs no service]")
@click.option("--daemon/--no-daemon", default=False, show_default=True,
              help="Start the daemon afterwards (MLKKR_DAEMON_WORKERS workers).")
@json_option
@handle_errors
def setup(name, storage, broker, daemon, as_json):
    """Create or repair this user's AiiDA profile.

    Safe to run any number of times: it creates the profile (SQLite by default, PostgreSQL when
    MLKKR_STORAGE=postgres and MLKKR_DB_* are set), sets it as default, creates and configures the
    `localhost` computer, migrates an old storage schema, and never makes a second profile.
    """
    from mlkkr.aiida.profile import ProfileSpec, ensure_profile, start_daemon

    spec = ProfileSpec.from_env(name=name, storage=storage, broker=broker)
    report = ensure_profile(spec)
    if daemon and spec.broker != "none":
        start_daemon(spec.name, max(spec.daemon_workers, 1))
        report["actions"].append("daemon started")

    def human(r):
        head = f"Profile {r['profile']!r} {'created' if r['created'] else 'ready'} in {r['config_dir']}"
        return "\n".join([head] + [f"  - {a}" for a in r["actions"]] or [head])

    emit(report, as_json, human)
