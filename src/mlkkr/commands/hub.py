"""``mlkkr hub``: start the local JupyterHub (the embedded default), after checking it can start."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import click

from mlkkr.commands._common import emit, handle_errors, json_option
from mlkkr.errors import ServiceError


def find_proxy(command: str) -> str | None:
    """The proxy executable: a path, a name on PATH, or installed next to this Python (make install)."""
    if os.sep in command:
        return command if os.access(command, os.X_OK) else None
    beside = Path(sys.executable).with_name(command)
    return str(beside) if beside.exists() else shutil.which(command)


def check_port(ip: str, port: int, what: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError as exc:
            raise ServiceError(
                f"port {port} on {ip} ({what}) is in use: {exc.strerror}. Stop the program that holds it "
                f"(another hub? `ss -ltnp 'sport = :{port}'` shows it) or choose another port with {flag}."
            ) from None


def preflight(settings) -> dict:
    """Everything ``mlkkr hub`` checks before starting; raises ServiceError with what to do."""
    from mlkkr.hub.config import internal_ports

    hub = settings["hub"]
    proxy = find_proxy(hub["proxy_command"])
    if proxy is None:
        raise ServiceError(
            f"the proxy {hub['proxy_command']!r} was not found. Install it with `make install` (into the "
            "virtual environment) or `npm install -g configurable-http-proxy`, or set hub.proxy_command."
        )
    api_port, hub_port = internal_ports(hub)
    check_port(hub["ip"], hub["port"], "the hub's public port", "--port")
    check_port("127.0.0.1", api_port, "the proxy's API, public port + 1", "--port")
    check_port("127.0.0.1", hub_port, "the hub itself, public port + 2", "--port")
    if settings["aiida"]["storage"] == "postgres":
        import psycopg

        pg = settings["postgres"]
        try:
            psycopg.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"],
                            password=pg["admin_password"] or None, dbname=pg["admin_database"],
                            connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise ServiceError(f"PostgreSQL at {pg['host']}:{pg['port']} is not reachable as "
                               f"{pg['admin_user']!r}: {str(exc).strip()}. Start it or fix [postgres].") from None
    if settings["aiida"]["broker"] == "rabbitmq":
        rmq = settings["rabbitmq"]
        try:
            socket.create_connection((rmq["host"], rmq["port"]), timeout=5).close()
        except OSError as exc:
            raise ServiceError(f"RabbitMQ at {rmq['host']}:{rmq['port']} is not reachable ({exc}). Start it "
                               "(`rabbitmq-server -detached`) or use aiida.broker = \"zeromq\".") from None
    return {"url": f"http://{hub['ip']}:{hub['port']}/", "proxy": proxy, "data_dir": str(settings.data_dir),
            "proxy_api_port": api_port, "hub_port": hub_port, "settings": settings.as_dict()}


@click.command("hub")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Settings file (TOML) [env MLKKR_CONFIG]; see mlkkr.settings for the keys.")
@click.option("--ip", help="Address to listen on [hub.ip, default 127.0.0.1].")
@click.option("--port", type=int, help="Public port [hub.port, default 8000]; the next two are used too.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="State, homes and store [hub.data_dir].")
@click.option("--admin", help="Name of the first admin [hub.admin, default admin].")
@click.option("--services", is_flag=True,
              help="Per-user PostgreSQL databases and RabbitMQ (aiida.storage=postgres, aiida.broker=rabbitmq).")
@click.option("--check", is_flag=True, help="Only check that the hub can start, and report.")
@json_option
@handle_errors
def hub(config_path, ip, port, data_dir, admin, services, check, as_json):
    """Start the local JupyterHub: sign up at http://127.0.0.1:8000, JupyterLab with AiiDA ready.

    Checks first that the ports are free, the proxy is installed and the configured services answer;
    if not, it says what to do and exits non-zero. Stop it with Ctrl-C.
    """
    from mlkkr.settings import load_settings

    overrides = {"hub.ip": ip, "hub.port": port, "hub.admin": admin,
                 "hub.data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    if services:
        overrides.update({"aiida.storage": "postgres", "aiida.broker": "rabbitmq"})
    settings = load_settings(config_path, overrides)
    report = preflight(settings)
    if check:
        emit(report, as_json, lambda r: f"ready to start at {r['url']} (data in {r['data_dir']})")
        return
    values = settings.as_dict()
    values["hub"]["data_dir"] = str(settings.data_dir)
    values["hub"]["proxy_command"] = report["proxy"]
    state = settings.data_dir / "hub"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=state, prefix=".settings-")
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle, indent=2)
    os.replace(tmp, state / "settings.json")
    env = dict(os.environ, MLKKR_HUB_SETTINGS=str(state / "settings.json"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    config_file = Path(__file__).resolve().parent.parent / "hub" / "jupyterhub_config.py"
    click.echo(f"mlkkr hub: starting at {report['url']} (data in {settings.data_dir}); Ctrl-C stops it",
               err=True)
    exe = str(Path(sys.executable).with_name("jupyterhub"))
    os.chdir(state)
    os.execve(exe, [exe, "-f", str(config_file)], env)
