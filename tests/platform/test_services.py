"""Service mode: each user gets their own PostgreSQL database, RabbitMQ is the broker, and a
WorkChain submitted to the user's daemon (started with their server) finishes."""

from __future__ import annotations

import json
import secrets

import psycopg
import pytest

from mlkkr.hub.provision import database_name, drop_user_database
from mlkkr.settings import load_settings
from support import aiida_run

pytestmark = pytest.mark.services

SUBMIT = """
import json, time
from aiida import load_profile, orm
from aiida.engine import submit
from aiida.plugins import WorkflowFactory
profile = load_profile()
code = orm.InstalledCode(label='bash', computer=orm.load_computer('localhost'),
                         filepath_executable='/bin/bash').store()
builder = WorkflowFactory('core.arithmetic.multiply_add').get_builder()
builder.code, builder.x, builder.y, builder.z = code, orm.Int(6), orm.Int(7), orm.Int(-2)
node = submit(builder)
start = time.monotonic()
while not node.is_terminated and time.monotonic() - start < 150:
    time.sleep(0.5)
print(json.dumps({"storage": profile.storage_backend, "db": profile.storage_config["database_name"],
                  "broker": profile.process_control_backend, "state": node.process_state.value,
                  "exit_status": node.exit_status, "result": node.outputs.result.value if node.is_finished_ok else None,
                  "called": sorted(c.process_label for c in node.called)}))
"""


def test_postgres_profile_per_user_and_workchain_on_the_daemon(hub_factory):
    user = f"erin-{secrets.token_hex(3)}"
    hub = hub_factory("--services")
    pg = load_settings()["postgres"]
    try:
        admin = hub.user("admin")
        erin = hub.user(user, admin=admin)
        erin.start_server()
        erin.wait_ready()
        name = database_name(user)
        with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"], dbname="postgres") as conn:
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
        assert owner == (name,), "the user's database exists and belongs to the user's own role"

        result = json.loads(aiida_run(hub.home(user), SUBMIT))
        assert result == {"storage": "core.psql_dos", "db": name, "broker": "core.rabbitmq", "state": "finished",
                          "exit_status": 0, "result": 40, "called": ["ArithmeticAddCalculation", "multiply"]}
    finally:
        hub.stop()
        drop_user_database(pg, user, hub.data_dir / "hub" / "secrets")
