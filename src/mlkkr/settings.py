"""Platform settings: one TOML file, validated against a schema with defaults.

Every key the platform reads is declared in :data:`SCHEMA`; an unknown section or key, or a value of
the wrong type or range, raises :class:`~mlkkr.errors.InputError` naming the key and what is allowed.
The file is found at ``--config PATH`` or ``$MLKKR_CONFIG``; without one the defaults below give the
embedded default: a hub on 127.0.0.1:8000 and per-user SQLite profiles with AiiDA's ZeroMQ broker.

Example ``mlkkr.toml`` for the service mode (PostgreSQL + RabbitMQ)::

    [hub]
    port = 8000
    admin = "alice"

    [aiida]
    storage = "postgres"
    broker = "rabbitmq"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkkr.errors import InputError


@dataclass(frozen=True)
class Key:
    """One setting: its type, default, allowed values or range, and a help text."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "mlkkr")


SCHEMA: dict[str, dict[str, Key]] = {
    "hub": {
        "ip": Key(str, "127.0.0.1", "address the hub's proxy listens on (loopback unless you mean it)"),
        "port": Key(int, 8000, "public port of the hub's proxy", minimum=1, maximum=65535),
        "data_dir": Key(str, "", "folder of the hub database, secrets, user homes and the shared store "
                                 "(default: $XDG_DATA_HOME/mlkkr)"),
        "admin": Key(str, "admin", "name of the first admin; they sign up like anybody and are approved"),
        "allowed_failed_logins": Key(int, 3, "failed logins before a lock-out (0 disables)", minimum=0),
        "lockout_seconds": Key(int, 600, "length of a lock-out after too many failed logins", minimum=1),
        "idle_timeout": Key(int, 3600, "idle culler: stop servers idle this many seconds (0 disables)",
                            minimum=0),
        "spawn_timeout": Key(int, 120, "seconds a user server may take to start", minimum=10),
        "proxy_command": Key(str, "configurable-http-proxy", "the proxy executable (name on PATH or path)"),
        "default_url": Key(str, "/lab", "where users land after login", choices=("/lab", "/tree", "/voila")),
        "root_spawn": Key(str, "admin-only", "local mode with the hub running as root, where every server "
                                             "runs as root too: 'admin-only' lets only hub.admin start one; "
                                             "'all' lets every approved user (each of them is then root on "
                                             "this machine)", choices=("admin-only", "all")),
    },
    "aiida": {
        "storage": Key(str, "sqlite", "per-user storage backend", choices=("sqlite", "postgres")),
        "broker": Key(str, "zeromq", "process broker; zeromq needs no service and runs with the daemon",
                      choices=("zeromq", "rabbitmq", "none")),
        "daemon_workers": Key(int, 1, "daemon workers started with each user server (0: none)",
                              minimum=0, maximum=16),
    },
    "postgres": {
        "host": Key(str, "127.0.0.1", "PostgreSQL host"),
        "port": Key(int, 5432, "PostgreSQL port", minimum=1, maximum=65535),
        "admin_user": Key(str, "postgres", "role that may create roles and databases (one per user)"),
        "admin_password": Key(str, "", "its password (empty: trust or peer authentication)"),
        "admin_database": Key(str, "postgres", "database to connect to for administration"),
    },
    "rabbitmq": {
        "host": Key(str, "127.0.0.1", "RabbitMQ host"),
        "port": Key(int, 5672, "RabbitMQ AMQP port", minimum=1, maximum=65535),
        "user": Key(str, "guest", "RabbitMQ user"),
        "password": Key(str, "guest", "RabbitMQ password"),
        "vhost": Key(str, "", "virtual host (AiiDA prefixes queues with the profile's UUID)"),
        "consumer_timeout_disabled": Key(bool, True, "the server runs with consumer_timeout disabled "
                                                     "(as .ci/run and the images set it); silences AiiDA's "
                                                     "version warning"),
    },
    "docker": {
        "image": Key(str, "localhost/mlkkr-singleuser:cpu", "single-host mode: the singleuser image"),
        "pull_policy": Key(str, "ifnotpresent", "when DockerSpawner pulls the image",
                           choices=("ifnotpresent", "always", "never", "skip")),
        "network": Key(str, "mlkkr", "container network shared by the hub and the user containers"),
        "container_name": Key(str, "{prefix}-{username}", "name of a user's container"),
        "home_volume": Key(str, "mlkkr-home-{username}", "named volume of a user's home ({username} "
                                                         "is replaced); it survives the container"),
        "store_volume": Key(str, "mlkkr-store", "the shared archive store: a named volume or an "
                                                "absolute host folder, mounted read-only in user containers"),
        "store_path": Key(str, "/srv/mlkkr-store", "where the store is mounted (given as MLKKR_STORE)"),
        "hub_state": Key(str, "/srv/jupyterhub", "the hub's database and secrets inside the hub container"),
        "hub_api_port": Key(int, 8081, "port of the hub's API inside the hub container", minimum=1,
                            maximum=65535),
        "hub_connect_ip": Key(str, "", "address user containers reach the hub at (default: the hub "
                                       "container's own address on the network)"),
        "remove_containers": Key(bool, True, "delete a user's container when their server stops (the "
                                             "home volume stays)"),
        "mem_limit": Key(str, "", "memory limit of a user container, e.g. '8G' (empty: none)"),
        "cpu_limit": Key(float, 0.0, "CPU limit of a user container (0: none)", minimum=0.0),
    },
    "archive": {
        "enabled": Key(bool, True, "run the archive service, the only writer of the shared store"),
        "port": Key(int, 0, "port of the archive service on 127.0.0.1 (0: a free port chosen when the hub "
                            "starts; users reach it through the hub at /services/archive/)",
                    minimum=0, maximum=65535),
        "max_upload_mb": Key(int, 20480, "largest archive the store accepts, in MiB", minimum=1),
        "max_unpacked_mb": Key(int, 40960, "the most an archive may unpack to (all its files together), in "
                                           "MiB: checking an upload unpacks its database into the store's "
                                           "staging folder, so a small upload cannot fill the disk",
                               minimum=1),
    },
}


class Settings:
    """Validated settings: ``settings['hub']['port']`` or ``settings.hub['port']``."""

    def __init__(self, values: dict[str, dict[str, Any]], source: str | None = None) -> None:
        self._values = values
        self.source = source

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self._values[section]

    def __getattr__(self, section: str) -> dict[str, Any]:
        try:
            return self._values[section]
        except KeyError:
            raise AttributeError(section) from None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {section: dict(keys) for section, keys in self._values.items()}

    @property
    def data_dir(self) -> Path:
        return Path(self.hub["data_dir"] or _default_data_dir()).expanduser().resolve()


def _check(section: str, name: str, key: Key, value: Any) -> Any:
    field = f"{section}.{name}"
    if key.type is int and isinstance(value, bool) or not isinstance(value, key.type):
        raise InputError(field, value, reason=f"must be of type {key.type.__name__}, got {value!r}")
    if key.choices is not None and value not in key.choices:
        raise InputError(field, value, allowed=key.choices)
    if key.minimum is not None and value < key.minimum:
        raise InputError(field, value, reason=f"{value!r} is below the minimum {key.minimum}")
    if key.maximum is not None and value > key.maximum:
        raise InputError(field, value, reason=f"{value!r} is above the maximum {key.maximum}")
    return value


def validate(raw: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Merge ``raw`` (parsed TOML) and ``overrides`` (``{"hub.port": 8001}``) over the defaults."""
    values = {section: {name: key.default for name, key in keys.items()} for section, keys in SCHEMA.items()}
    for section, entries in raw.items():
        if section not in SCHEMA:
            raise InputError(section, reason="unknown config section", allowed=sorted(SCHEMA))
        if not isinstance(entries, dict):
            raise InputError(section, entries, reason="must be a table of keys ([section])")
        for name, value in entries.items():
            if name not in SCHEMA[section]:
                raise InputError(f"{section}.{name}", reason="unknown config key",
                                 allowed=[f"{section}.{k}" for k in SCHEMA[section]])
            values[section][name] = _check(section, name, SCHEMA[section][name], value)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, name = dotted.split(".", 1)
        values[section][name] = _check(section, name, SCHEMA[section][name], value)
    return values


def load_settings(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate the settings file (``path``, else ``$MLKKR_CONFIG``, else defaults only)."""
    path = path or os.environ.get("MLKKR_CONFIG") or None
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError("--config", str(path), reason=f"no such file: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InputError("--config", str(path), reason=f"{path} is not valid TOML: {exc}") from None
    return Settings(validate(raw, overrides), source=str(path) if path else None)
