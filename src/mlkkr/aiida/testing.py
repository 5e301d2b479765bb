"""A throw-away service-mode AiiDA profile (PostgreSQL + RabbitMQ + a real daemon) for tests and benchmarks.

:class:`ServiceProfile` creates its own PostgreSQL database (as the admin user of the ``[postgres]``
settings, over TCP), a ``core.psql_dos`` profile with the ``core.rabbitmq`` broker in the *currently
loaded* AiiDA configuration (tests: the temporary one of aiida-core's ``aiida_config`` fixture), a
``localhost`` computer with a private work directory and the ``mlkkr`` code; it starts and stops the
profile's daemon with ``verdi`` of this environment (its ``bin/`` first on PATH, as the daemon needs),
and at the end stops the daemon, deletes the profile and drops the database.

RabbitMQ must run with ``consumer_timeout`` disabled (scripts/prepare-machine.sh does), so the
profile sets ``warnings.rabbitmq_version`` to False.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlkkr.errors import ServiceError


def _settings() -> tuple[dict[str, Any], dict[str, Any]]:
    from mlkkr.settings import load_settings

    s = load_settings()
    return dict(s["postgres"]), dict(s["rabbitmq"])


def _admin_connect(pg: dict[str, Any]) -> Any:
    import psycopg

    try:
        return psycopg.connect(host=pg["host"], port=int(pg["port"]), user=pg["admin_user"],
                               password=pg.get("admin_password") or None, dbname=pg.get("admin_database", "postgres"),
                               autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise ServiceError(f"PostgreSQL on {pg['host']}:{pg['port']} is not reachable as {pg['admin_user']!r} "
                           f"({str(exc).strip()}); run scripts/prepare-machine.sh test") from None


def check_services() -> None:
    """ServiceError naming what to start when PostgreSQL or RabbitMQ does not answer."""
    import socket

    pg, rmq = _settings()
    _admin_connect(pg).close()
    try:
        socket.create_connection((rmq["host"], int(rmq["port"])), timeout=5).close()
    except OSError as exc:
        raise ServiceError(f"RabbitMQ on {rmq['host']}:{rmq['port']} is not reachable ({exc}); run "
                           "scripts/prepare-machine.sh test") from None


def bin_dir() -> Path:
    """This environment's ``bin/`` (verdi and mlkkr live there)."""
    return Path(sys.executable).parent


def env_with_bin() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", "")])
    return env


class ServiceProfile:
    """A PostgreSQL + RabbitMQ profile with its own database, computer, code and daemon."""

    def __init__(self, workdir: Path, name: str | None = None, workers: int = 1) -> None:
        self.name = name or f"mlkkr-test-{secrets.token_hex(4)}"
        self.database = self.name.replace("-", "_")
        self.workdir = Path(workdir)
        self.workers = workers
        self.profile: Any = None
        self.computer: Any = None
        self.code: Any = None

    # -- set-up / tear-down ---------------------------------------------------------------------------
    def create(self) -> ServiceProfile:
        """Database, profile (migrated), computer ``localhost`` and code ``mlkkr@localhost``."""
        from aiida.manage.configuration import create_profile, get_config
        from aiida.plugins import BrokerFactory

        pg, rmq = _settings()
        check_services()
        with _admin_connect(pg) as conn:
            conn.execute(f"CREATE DATABASE {self.database} ENCODING 'UTF8' TEMPLATE template0")
        broker = BrokerFactory("core.rabbitmq").get_default_config()
        broker.update(broker_username=rmq["user"], broker_password=rmq["password"], broker_host=rmq["host"],
                      broker_port=int(rmq["port"]), broker_virtual_host=rmq.get("vhost", "").lstrip("/"))
        config = get_config()
        repo = self.workdir / "repository"
        # Not a "test profile": aiida-core runs those with kiwipy's testing mode, whose task queue is not
        # durable and expires 10 s after its last consumer left — stopping the daemon for longer loses
        # every process task (the work chains then wait forever). A service profile must survive that.
        self.profile = create_profile(
            config, name=self.name, email="mlkkr-tests@localhost", storage_backend="core.psql_dos",
            storage_config={"database_engine": "postgresql_psycopg", "database_hostname": pg["host"],
                            "database_port": int(pg["port"]), "database_username": pg["admin_user"],
                            "database_password": pg.get("admin_password", ""), "database_name": self.database,
                            "repository_uri": repo.as_uri()},
            broker_backend="core.rabbitmq", broker_config=broker, is_test_profile=False)
        for key, value in (("warnings.rabbitmq_version", False), ("warnings.development_version", False),
                           ("runner.poll.interval", 1)):
            config.set_option(key, value, scope=self.name)
        config.store()
        return self

    def setup_computer(self) -> None:
        """``localhost`` (core.local + core.direct) with a private work directory, and ``mlkkr@localhost``."""
        from aiida import orm

        from mlkkr.aiida.launch import resolve_code

        computer = orm.Computer(label="localhost", hostname="localhost", transport_type="core.local",
                                scheduler_type="core.direct", workdir=str(self.workdir / "scratch")).store()
        computer.set_minimum_job_poll_interval(0.5)
        computer.set_default_mpiprocs_per_machine(1)
        computer.configure(safe_interval=0)
        self.computer = computer
        self.code = resolve_code(computer)

    def verdi(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """``verdi -p <profile> …`` of this environment."""
        return subprocess.run([str(bin_dir() / "verdi"), "-p", self.name, *args], env=env_with_bin(),
                              capture_output=True, text=True, timeout=timeout)

    def start_daemon(self) -> None:
        """``verdi daemon start`` (no-op when it runs); waits until the workers answer."""
        from aiida.engine.daemon.client import get_daemon_client

        client = get_daemon_client(self.name)
        if client.is_daemon_running:
            return
        result = self.verdi("daemon", "start", str(self.workers))
        if result.returncode != 0:
            raise ServiceError(f"verdi daemon start failed: {result.stdout}{result.stderr}")
        deadline = time.monotonic() + 60
        while not client.is_daemon_running and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop_daemon(self) -> None:
        """``verdi daemon stop`` (waits until it has stopped)."""
        from aiida.engine.daemon.client import get_daemon_client

        client = get_daemon_client(self.name)
        if client.is_daemon_running:
            self.verdi("daemon", "stop")
        deadline = time.monotonic() + 60
        while client.is_daemon_running and time.monotonic() < deadline:
            time.sleep(0.2)

    def daemon_log(self) -> str:
        from aiida.engine.daemon.client import get_daemon_client

        path = Path(get_daemon_client(self.name).daemon_log_file)
        return path.read_text(errors="replace")[-20000:] if path.exists() else ""

    def destroy(self) -> None:
        """Stop the daemon, delete the profile, drop the database, remove the repository."""
        from aiida.manage.configuration import get_config
        from aiida.manage.manager import get_manager

        try:
            self.stop_daemon()
        finally:
            manager = get_manager()
            current = manager.get_profile()
            if current is not None and current.name == self.name:
                manager.unload_profile()
            config = get_config()
            if self.name in config.profile_names:
                config.remove_profile(self.name)
                config.store()
            pg, _ = _settings()
            with _admin_connect(pg) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            shutil.rmtree(self.workdir / "repository", ignore_errors=True)


def wait_for(node: Any, timeout: float = 600, poll: float = 0.5) -> Any:
    """Wait until a process node is terminated (or ``timeout`` s); returns the node."""
    deadline = time.monotonic() + timeout
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(poll)
    return node
