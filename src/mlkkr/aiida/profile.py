"""Create or repair the AiiDA profile of the current user, idempotently.

This is what runs when a user's server starts (local spawner, container start-up script, Kubernetes
pod): the same code path everywhere, driven by :class:`ProfileSpec`, which is read from environment
variables the hub (or the image) sets. The profile lives in ``$AIIDA_PATH/.aiida`` (by default the
user's home), so it survives restarts of the user's server; running this again never makes a second
profile, and it never switches an existing profile to another storage (that would lose data).

Environment variables (all optional):

======================  =====================================================================
``MLKKR_PROFILE``       profile name (default: ``$JUPYTERHUB_USER``, else the OS user)
``MLKKR_EMAIL``         e-mail of the profile's default user (default ``<name>@mlkkr.local``)
``MLKKR_STORAGE``       ``sqlite`` (default) or ``postgres``
``MLKKR_BROKER``        ``zeromq`` (default; started with the daemon), ``rabbitmq`` or ``none``
``MLKKR_DB_*``          ``HOST``, ``PORT``, ``NAME``, ``USER``, ``PASSWORD`` of the PostgreSQL database
``MLKKR_RMQ_*``         ``HOST``, ``PORT``, ``USER``, ``PASSWORD``, ``VHOST`` of RabbitMQ
``MLKKR_RMQ_CONSUMER_TIMEOUT_DISABLED``  ``1`` (default) when RabbitMQ runs with ``consumer_timeout``
                        disabled; then AiiDA's RabbitMQ version warning is switched off
``MLKKR_DAEMON_WORKERS``  daemon workers to start with the server (default 1; 0: none)
======================  =====================================================================
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlkkr.errors import InputError, ServiceError

STORAGES = {"sqlite": "core.sqlite_dos", "postgres": "core.psql_dos"}
BROKERS = {"zeromq": "core.zeromq", "rabbitmq": "core.rabbitmq", "none": None}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class ProfileSpec:
    """What the user's profile must look like. ``from_env()`` reads the ``MLKKR_*`` variables."""

    name: str
    storage: str = "sqlite"
    broker: str = "zeromq"
    email: str = ""
    db: dict[str, Any] = field(default_factory=dict)
    rmq: dict[str, Any] = field(default_factory=dict)
    rmq_consumer_timeout_disabled: bool = True
    daemon_workers: int = 1

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name or ""):
            raise InputError("profile", self.name, reason=f"{self.name!r} is not a valid name: use 1-64 "
                             "letters, digits, '_', '.', '@' or '-', starting with a letter or digit")
        if self.storage not in STORAGES:
            raise InputError("storage", self.storage, allowed=STORAGES)
        if self.broker not in BROKERS:
            raise InputError("broker", self.broker, allowed=BROKERS)
        if self.storage == "postgres":
            for key in ("name", "user"):
                if not self.db.get(key):
                    raise InputError(f"db.{key}", None, reason="required for PostgreSQL storage "
                                     f"(set MLKKR_DB_{key.upper()})")
        if not 0 <= int(self.daemon_workers) <= 16:
            raise InputError("daemon_workers", self.daemon_workers, allowed="0 to 16")
        self.email = self.email or f"{self.name}@mlkkr.local"

    @classmethod
    def from_env(cls, **overrides: Any) -> ProfileSpec:
        env = os.environ
        name = env.get("MLKKR_PROFILE") or env.get("JUPYTERHUB_USER") or getpass.getuser()
        db = {
            "host": env.get("MLKKR_DB_HOST", "127.0.0.1"),
            "port": int(env.get("MLKKR_DB_PORT", "5432")),
            "name": env.get("MLKKR_DB_NAME", ""),
            "user": env.get("MLKKR_DB_USER", ""),
            "password": env.get("MLKKR_DB_PASSWORD", ""),
        }
        rmq = {
            "host": env.get("MLKKR_RMQ_HOST", "127.0.0.1"),
            "port": int(env.get("MLKKR_RMQ_PORT", "5672")),
            "user": env.get("MLKKR_RMQ_USER", "guest"),
            "password": env.get("MLKKR_RMQ_PASSWORD", "guest"),
            "vhost": env.get("MLKKR_RMQ_VHOST", ""),
        }
        values: dict[str, Any] = dict(
            name=name,
            storage=env.get("MLKKR_STORAGE", "sqlite"),
            broker=env.get("MLKKR_BROKER", "zeromq"),
            email=env.get("MLKKR_EMAIL", ""),
            db=db,
            rmq=rmq,
            rmq_consumer_timeout_disabled=_env_bool("MLKKR_RMQ_CONSUMER_TIMEOUT_DISABLED", True),
            daemon_workers=int(env.get("MLKKR_DAEMON_WORKERS", "1")),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        data = asdict(self)
        for section in ("db", "rmq"):
            if data[section].get("password"):
                data[section]["password"] = "***"
        return data


def config_dir() -> Path:
    """The AiiDA configuration folder of this process (``$AIIDA_PATH/.aiida`` or ``~/.aiida``)."""
    from aiida.manage.configuration.settings import AiiDAConfigDir

    return Path(AiiDAConfigDir.get())


@contextlib.contextmanager
def _setup_lock(directory: Path):
    """Serialise concurrent set-ups of the same profile folder (e.g. a quick restart)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".mlkkr-setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _broker_config(spec: ProfileSpec) -> tuple[str | None, dict[str, Any] | None]:
    backend = BROKERS[spec.broker]
    if backend is None:
        return None, None
    from aiida.plugins import BrokerFactory

    config = BrokerFactory(backend).get_default_config()
    if spec.broker == "rabbitmq":
        config.update(
            broker_username=spec.rmq["user"],
            broker_password=spec.rmq["password"],
            broker_host=spec.rmq["host"],
            broker_port=int(spec.rmq["port"]),
            broker_virtual_host=spec.rmq["vhost"].lstrip("/"),
        )
    return backend, config


def _storage_config(spec: ProfileSpec, dirpath: Path) -> dict[str, Any]:
    if spec.storage == "sqlite":
        return {"filepath": str(dirpath / "repository" / f"sqlite_dos_{spec.name}")}
    return {
        "database_engine": "postgresql_psycopg",
        "database_hostname": spec.db["host"],
        "database_port": int(spec.db["port"]),
        "database_username": spec.db["user"],
        "database_password": spec.db["password"],
        "database_name": spec.db["name"],
        "repository_uri": (dirpath / "repository" / f"psql_dos_{spec.name}").as_uri(),
    }


def _check_reachable(spec: ProfileSpec) -> None:
    """Fail early, with what to do, when a configured service is down (before touching the config)."""
    if spec.storage == "postgres":
        import psycopg

        try:
            psycopg.connect(host=spec.db["host"], port=int(spec.db["port"]), user=spec.db["user"],
                            password=spec.db["password"] or None, dbname=spec.db["name"],
                            connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise ServiceError(
                f"PostgreSQL database {spec.db['name']!r} on {spec.db['host']}:{spec.db['port']} is not "
                f"reachable as {spec.db['user']!r}: {str(exc).strip()}. Start PostgreSQL, or ask the hub "
                "admin to provision the database (the hub does it at spawn)."
            ) from None
    if spec.broker == "rabbitmq":
        import socket

        try:
            socket.create_connection((spec.rmq["host"], int(spec.rmq["port"])), timeout=5).close()
        except OSError as exc:
            raise ServiceError(
                f"RabbitMQ on {spec.rmq['host']}:{spec.rmq['port']} is not reachable ({exc}). Start it "
                "(`rabbitmq-server -detached`) or configure the zeromq broker, which needs no service."
            ) from None


def ensure_profile(spec: ProfileSpec) -> dict[str, Any]:
    """Create the profile described by ``spec`` or repair it; return a report of what was done.

    Repairs: a missing default profile, an unmigrated storage schema, changed broker credentials, a
    missing or unconfigured ``localhost`` computer, missing default options, missing or broken JuKKR
    codes (``voronoi``/``kkrhost``/``kkrimp@localhost``, :mod:`mlkkr.aiida.jukkr_codes`). Refuses (InputError) to
    switch an existing profile's storage backend, since that would orphan the user's data.
    """
    from aiida.manage.configuration import create_profile, get_config, load_profile

    from mlkkr.aiida.jukkr_codes import ensure_codes

    _check_reachable(spec)
    dirpath = config_dir()
    actions: list[str] = []
    with _setup_lock(dirpath):
        config = get_config(create=True)
        created = spec.name not in config.profile_names
        storage_backend = STORAGES[spec.storage]
        broker_backend, broker_config = _broker_config(spec)
        if created:
            create_profile(
                config,
                name=spec.name,
                email=spec.email,
                storage_backend=storage_backend,
                storage_config=_storage_config(spec, dirpath),
                broker_backend=broker_backend,
                broker_config=broker_config,
            )
            actions.append(f"created profile {spec.name!r} ({storage_backend}, broker {broker_backend})")
        profile = config.get_profile(spec.name)
        if profile.storage_backend != storage_backend:
            raise InputError(
                "storage", spec.storage,
                reason=f"profile {spec.name!r} already uses {profile.storage_backend}; mlkkr does not switch "
                "an existing profile's storage (its data would be orphaned). Export it with `verdi archive "
                "create` and set up a new profile, or keep the current storage",
            )
        if not created and (profile.process_control_backend != broker_backend
                            or (broker_config and profile.process_control_config != broker_config)):
            profile.set_process_controller(broker_backend, broker_config)
            config.update_profile(profile)
            actions.append(f"updated broker to {broker_backend}")
        if config.default_profile_name != spec.name:
            config.set_default_profile(spec.name, overwrite=True)
            actions.append("set as default profile")
        options = {"runner.poll.interval": 1}
        if spec.broker == "rabbitmq" and spec.rmq_consumer_timeout_disabled:
            options["warnings.rabbitmq_version"] = False
        for key, value in options.items():
            if profile.get_option(key, None) != value:
                config.set_option(key, value, scope=spec.name)
                actions.append(f"set option {key}={value}")
        config.store()

        profile = load_profile(spec.name, allow_switch=True)
        actions += _repair_storage(profile)
        actions += _ensure_localhost(dirpath / "scratch" / spec.name)
        actions += ensure_codes()
    return {"profile": spec.name, "created": created, "config_dir": str(dirpath),
            "storage": storage_backend, "broker": broker_backend, "actions": actions}


def _repair_storage(profile) -> list[str]:
    from aiida.common.exceptions import IncompatibleStorageSchema

    storage_cls = profile.storage_cls
    try:
        storage_cls(profile).close()
    except IncompatibleStorageSchema:
        storage_cls.migrate(profile)
        return ["migrated the storage schema"]
    return []


def _ensure_localhost(workdir: Path) -> list[str]:
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    actions = []
    try:
        computer = orm.load_computer("localhost")
    except NotExistent:
        computer = orm.Computer(
            label="localhost",
            hostname="localhost",
            description="This machine: the user's server (set up by mlkkr)",
            transport_type="core.local",
            scheduler_type="core.direct",
            workdir=str(workdir),
        ).store()
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
        actions.append("created computer 'localhost'")
    if not computer.is_configured:
        computer.configure(safe_interval=0)
        actions.append("configured computer 'localhost'")
    return actions


def verdi_executable() -> str:
    """``verdi`` of this environment (the daemon re-invokes it, so it must be the same install)."""
    candidate = Path(sys.executable).with_name("verdi")
    return str(candidate) if candidate.exists() else (shutil.which("verdi") or "verdi")


def daemon_env() -> dict[str, str]:
    """Environment for daemon commands: this environment's bin/ first on PATH, as the daemon needs."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


_DEFERRED_START = """
import socket, subprocess, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while port and time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.5)
subprocess.Popen(sys.argv[4:], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


def start_daemon(profile: str, workers: int, wait: bool = True, after: tuple[str, int] | None = None) -> None:
    """Start the profile's daemon (no-op if it runs).

    ``wait=False`` detaches (for a server's start-up); with ``after=(host, port)`` the detached starter
    first waits (at most 2 minutes) until that port answers, so that the daemon's own start (three
    Python processes importing AiiDA) does not compete with the user's server for the CPU.
    """
    if workers <= 0:
        return
    cmd = [verdi_executable(), "-p", profile, "daemon", "start", str(workers)]
    if wait:
        result = subprocess.run(cmd, env=daemon_env(), capture_output=True, text=True, timeout=120)
        if result.returncode != 0 and "already running" not in (result.stdout + result.stderr):
            raise ServiceError(f"could not start the AiiDA daemon: {result.stdout}{result.stderr}".strip())
        return
    host, port = after or ("", 0)
    # A throw-away interpreter starts the daemon in a new session: it is re-parented to init, and the
    # server that execs after us never inherits a child it does not reap.
    subprocess.Popen([sys.executable, "-c", _DEFERRED_START, host, str(port), "120", *cmd], env=daemon_env(),
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_daemon(profile: str, env: dict[str, str] | None = None, timeout: float = 60) -> bool:
    """Stop the profile's daemon; returns whether ``verdi daemon stop`` succeeded."""
    full_env = daemon_env()
    full_env.update(env or {})
    result = subprocess.run([verdi_executable(), "-p", profile, "daemon", "stop"], env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode == 0
