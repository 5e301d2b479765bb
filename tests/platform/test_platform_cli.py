"""The `mlkkr` command: every command has --help; setup is idempotent and repairs; status reports
like `verdi status`; `mlkkr hub` refuses bad input with a message that says what to do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mlkkr
from mlkkr.cli import COMMANDS
from support import free_port_block

MLKKR = str(Path(sys.executable).with_name("mlkkr"))


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    full_env.update(env or {})
    return subprocess.run([MLKKR, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def all_command_paths() -> list[list[str]]:
    """Every command and sub-command, found by walking the click tree."""
    import click

    from mlkkr.cli import main

    paths = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])

    walk(main, [])
    return paths


def test_version_and_help_of_every_command():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"mlkkr, version {mlkkr.__version__}"
    paths = all_command_paths()
    assert {p[0] for p in paths if p} >= set(COMMANDS)
    for path in paths:
        result = run(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage:" in result.stdout


@pytest.fixture
def aiida_home(tmp_path):
    return {"AIIDA_PATH": str(tmp_path), "MLKKR_PROFILE": "carla", "MLKKR_BROKER": "zeromq"}


def test_setup_is_idempotent_and_repairs(aiida_home, tmp_path):
    first = run("setup", "--json", env=aiida_home)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["created"] is True and report["profile"] == "carla"
    assert "created computer 'localhost'" in report["actions"]

    again = json.loads(run("setup", "--json", env=aiida_home).stdout)
    assert again["created"] is False and again["actions"] == []

    # Repair: a config whose default profile was lost gets it back, with nothing else touched.
    config_file = tmp_path / ".aiida" / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("default_profile")
    config_file.write_text(json.dumps(config))
    repaired = json.loads(run("setup", "--json", env=aiida_home).stdout)
    assert repaired["actions"] == ["set as default profile"]
    assert list(json.loads(config_file.read_text())["profiles"]) == ["carla"]


VERDI_CODES = """
import json
from aiida import load_profile, orm
load_profile()
codes = orm.InstalledCode.collection.all()
print(json.dumps(sorted((c.label, c.is_hidden, str(c.filepath_executable)) for c in codes)))
"""


def test_setup_makes_the_jukkr_codes_once_and_repairs_them(aiida_home, tmp_path):
    """The three codes at set-up, left alone on the next set-up; one pointing elsewhere (a moved prefix) is
    retired and remade; `mlkkr status` says down while it is broken."""
    from support import jukkr_installation

    inst = jukkr_installation()
    report = json.loads(run("setup", "--json", env=aiida_home).stdout)
    made = [a for a in report["actions"] if a.startswith("created code")]
    assert [a.split()[2].split("<")[0] for a in made] == ["voronoi@localhost", "kkrhost@localhost", "kkrimp@localhost"]

    def codes():
        out = subprocess.run([sys.executable, "-c", VERDI_CODES], env=dict(os.environ, **aiida_home),
                             capture_output=True, text=True, timeout=120)
        return [tuple(c) for c in json.loads(out.stdout.strip().splitlines()[-1])]

    assert codes() == sorted([(c, False, str(inst.executable(c))) for c in ("kkrhost", "kkrimp", "voronoi")])
    assert json.loads(run("setup", "--json", env=aiida_home).stdout)["actions"] == []
    # a code whose executable is somewhere else, as after the prefix moved
    subprocess.run([sys.executable, "-c", """
from aiida import load_profile, orm
load_profile()
orm.load_code("kkrhost@localhost").label = "kkrhost-old"
orm.InstalledCode(computer=orm.load_computer("localhost"), filepath_executable="/nowhere/kkr.x", label="kkrhost",
                  default_calc_job_plugin="kkr.kkr", with_mpi=False).store()
orm.load_code("kkrhost-old@localhost").is_hidden = True
"""], env=dict(os.environ, **aiida_home), check=True, capture_output=True, timeout=120)
    status = json.loads(run("status", "--json", env=aiida_home).stdout)
    jukkr = next(c for c in status["checks"] if c["name"] == "jukkr")
    assert jukkr["state"] == "down" and "kkrhost@localhost has another executable" in jukkr["detail"]
    repaired = json.loads(run("setup", "--json", env=aiida_home).stdout)["actions"]
    assert repaired[0].startswith("retired code kkrhost@localhost") and repaired[1].startswith("created code kkrhost")
    visible = [c for c in codes() if not c[1]]
    assert visible == sorted([(c, False, str(inst.executable(c))) for c in ("kkrhost", "kkrimp", "voronoi")])
    assert sum(1 for c in codes() if c[0].startswith("kkrhost-retired-")) == 1


def test_setup_refuses_to_switch_storage_and_leaves_config_alone(aiida_home, tmp_path):
    assert run("setup", env=aiida_home).returncode == 0
    config_file = tmp_path / ".aiida" / "config.json"
    before = config_file.read_bytes()
    result = run("setup", "--storage", "postgres", env=dict(
        aiida_home, MLKKR_DB_NAME="postgres", MLKKR_DB_USER="postgres", MLKKR_DB_HOST="127.0.0.1"))
    assert result.returncode == 2
    assert "storage" in result.stderr and "already uses core.sqlite_dos" in result.stderr
    assert config_file.read_bytes() == before


def test_setup_bad_profile_name(aiida_home, tmp_path):
    result = run("setup", "--profile", "../evil", env=aiida_home)
    assert result.returncode == 2 and "profile: '../evil'" in result.stderr
    assert not (tmp_path / ".aiida" / "config.json").exists()


def test_status_reports_and_fails_when_the_daemon_is_down(aiida_home):
    assert run("setup", "--daemon", env=aiida_home).returncode == 0
    try:
        up = run("status", "--json", env=aiida_home)
        report = json.loads(up.stdout)
        states = {c["name"]: c["state"] for c in report["checks"]}
        assert up.returncode == 0 and report["ok"] is True
        assert states == {"profile": "up", "storage": "up", "broker": "up", "daemon": "up", "jukkr": "up",
                          "hub": "skipped"}
    finally:
        subprocess.run([str(Path(sys.executable).with_name("verdi")), "-p", "carla", "daemon", "stop"],
                       env=dict(os.environ, **aiida_home), capture_output=True, timeout=60)
    down = run("status", env=aiida_home)
    assert down.returncode == 1
    assert "✘ daemon:" in down.stdout and "verdi daemon start" in down.stdout


def test_status_checks_a_hub_that_is_not_there(aiida_home):
    assert run("setup", env=aiida_home).returncode == 0
    port = free_port_block(1)
    result = run("status", "--json", "--hub", f"http://127.0.0.1:{port}", env=aiida_home)
    hub = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["hub"]
    assert result.returncode == 1 and hub["state"] == "down" and str(port) in hub["detail"]


# --- mlkkr hub: bad input ---------------------------------------------------------------------------


def test_hub_port_in_use(tmp_path):
    port = free_port_block()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = run("hub", "--port", str(port), "--data-dir", str(tmp_path / "d"), timeout=60)
    assert result.returncode == 3
    assert f"port {port} on 127.0.0.1" in result.stderr and "--port" in result.stderr
    assert not (tmp_path / "d" / "hub" / "jupyterhub.sqlite").exists()


def test_hub_proxy_missing(tmp_path):
    config = tmp_path / "mlkkr.toml"
    config.write_text('[hub]\nproxy_command = "no-such-proxy-here"\n')
    result = run("hub", "--config", str(config), "--port", str(free_port_block()),
                 "--data-dir", str(tmp_path / "d"), timeout=60)
    assert result.returncode == 3
    assert "'no-such-proxy-here' was not found" in result.stderr and "make install" in result.stderr


def test_hub_unknown_config_key(tmp_path):
    config = tmp_path / "mlkkr.toml"
    config.write_text("[hub]\nprot = 8000\n")
    result = run("hub", "--config", str(config), "--data-dir", str(tmp_path / "d"), timeout=60)
    assert result.returncode == 2
    assert "hub.prot: unknown config key" in result.stderr and "hub.port" in result.stderr


def test_hub_bad_value_and_bad_toml(tmp_path):
    config = tmp_path / "mlkkr.toml"
    config.write_text('[aiida]\nstorage = "mysql"\n')
    result = run("hub", "--config", str(config), timeout=60)
    assert result.returncode == 2
    assert "aiida.storage: 'mysql' is not allowed; allowed: sqlite, postgres" in result.stderr
    config.write_text("[hub\n")
    result = run("hub", "--config", str(config), timeout=60)
    assert result.returncode == 2 and "is not valid TOML" in result.stderr


def test_hub_check_reports_ready(tmp_path):
    port = free_port_block()
    result = run("hub", "--check", "--json", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == f"http://127.0.0.1:{port}/"
    assert (report["proxy_api_port"], report["hub_port"]) == (port + 1, port + 2)
    assert report["proxy"].endswith("configurable-http-proxy")
