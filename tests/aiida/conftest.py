"""A real service-mode AiiDA profile for the tests of mlkkr.aiida: PostgreSQL + RabbitMQ + daemon.

``service_profile`` (session): a throw-away ``core.psql_dos`` profile on its own database
(127.0.0.1:5432 as postgres) with the ``core.rabbitmq`` broker, in aiida-core's temporary test
configuration; dropped at the end. ``services`` (module): that profile loaded for the module (the
previous one is restored after), with ``localhost`` + ``mlkkr@localhost`` and a running daemon
(``verdi daemon start`` of this environment). Missing services fail the tests (they must run in CI).
"""

from __future__ import annotations

import pytest

from mlkkr.errors import ServiceError
from support import greens_cache_at


@pytest.fixture(scope="session", autouse=True)
def greens_cache_dir(tmp_path_factory):
    """The host-table cache of the engine jobs: a fresh folder (not ~/.cache), set before the daemon starts
    so that the daemon and the jobs it runs inherit it."""
    with greens_cache_at(tmp_path_factory.mktemp("greens-cache")) as folder:
        yield folder


@pytest.fixture(scope="session")
def service_profile(aiida_config, tmp_path_factory):
    """The throw-away PostgreSQL + RabbitMQ profile (created once per session, destroyed at the end)."""
    from mlkkr.aiida.testing import ServiceProfile

    sp = ServiceProfile(tmp_path_factory.mktemp("aiida-services"))
    try:
        sp.create()
    except ServiceError as exc:
        pytest.fail(f"services tests need PostgreSQL and RabbitMQ: {exc}")
    yield sp
    sp.destroy()


@pytest.fixture(scope="module")
def services(service_profile):
    """The service profile loaded for this module, with computer, code and a running daemon."""
    from aiida import orm
    from aiida.manage.configuration import profile_context

    with profile_context(service_profile.profile.name, allow_switch=True):
        if service_profile.computer is None:
            service_profile.setup_computer()
        else:  # nodes of an earlier load of the profile are stale: load them again
            service_profile.computer = orm.load_computer("localhost")
            service_profile.code = orm.load_code("mlkkr@localhost")
        service_profile.start_daemon()
        yield service_profile
