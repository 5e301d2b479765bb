"""Helpers shared by the test folders (import as ``from support import ...``; ``tests/`` is on the path).

Real hubs started with ``mlkkr hub`` on free loopback ports, and a runner for code against a user's
AiiDA profile. Fixtures that use them live in ``tests/conftest.py``."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from mlkkr.hub.client import HubClient, HubProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("MLKKR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "kkr-Green-2026"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: the pinned JuKKR source tarball: $MLKKR_JUKKR_SOURCE, else ../shared/jukkr next to the repository
JUKKR_SOURCE = Path(os.environ.get("MLKKR_JUKKR_SOURCE")
                    or ROOT.parent / "shared" / "jukkr" / "jukkr-2a47b06b-src.tar.gz").resolve()


def free_port_block(size: int = 3) -> int:
    """A port P with P .. P+size-1 all free on 127.0.0.1 (the hub uses three consecutive ports)."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        try:
            for offset in range(size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no free block of ports")


def kill_tree_under(path: Path) -> None:
    """Kill stray processes that belong to a test's data folder (daemons, kernels, servers)."""
    marker = str(path)
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
            if marker in cmd or marker in env.get("AIIDA_PATH", "") or marker in env.get("HOME", ""):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@contextmanager
def greens_cache_at(folder: Path) -> Iterator[Path]:
    """The engine's on-disk host-table cache in ``folder`` (``MLKKR_CACHE_DIR``, caching on) for the block;
    both variables are restored after. Set before a daemon starts, its jobs inherit it."""
    saved = {k: os.environ.get(k) for k in ("MLKKR_CACHE_DIR", "MLKKR_NO_CACHE")}
    os.environ["MLKKR_CACHE_DIR"] = str(folder)
    os.environ.pop("MLKKR_NO_CACHE", None)
    try:
        yield folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _toml(values: dict) -> str:
    """TOML of ``{section: {key: str | int | float | bool}}`` (what mlkkr's settings hold)."""
    lines = []
    for section, keys in values.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


def with_root_spawn(args: list[str], folder: Path, root_spawn: str) -> list[str]:
    """``args`` of ``mlkkr hub`` with ``hub.root_spawn`` set, unless its ``--config`` file sets it: a
    settings file in ``folder`` (the given one's keys, plus that one)."""
    args = list(args)
    raw: dict = {}
    if "--config" in args:
        index = args.index("--config")
        raw = tomllib.loads(Path(args[index + 1]).read_text())
        del args[index:index + 2]
    raw.setdefault("hub", {}).setdefault("root_spawn", root_spawn)
    config = folder / "mlkkr-test.toml"
    config.write_text(_toml(raw))
    return [*args, "--config", str(config)]


class RunningHub(HubProcess):
    """``mlkkr hub`` on free loopback ports with its own data folder.

    The tests run as root in CI and start servers for several users, which the local mode refuses to
    non-admins by default when the hub is root (``hub.root_spawn = "admin-only"``: every server runs
    as root there). These throw-away hubs opt in explicitly with ``root_spawn="all"`` unless the
    ``--config`` file given sets the key; ``root_spawn=None`` leaves the default.
    """

    def __init__(self, data_dir: Path, port: int, args: list[str], root_spawn: str | None = "all"):
        self.data_dir = data_dir
        self.port = port
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if root_spawn is not None:
            args = with_root_spawn(args, data_dir.parent, root_spawn)
        super().__init__([str(BIN / "mlkkr"), "hub", "--data-dir", str(data_dir), "--port", str(port), *args],
                         f"http://127.0.0.1:{port}", data_dir.parent / f"hub-{port}.log")

    def home(self, username: str) -> Path:
        return self.data_dir / "users" / username

    def client(self, username: str, password: str = PASSWORD) -> HubClient:
        return HubClient(self.url, username, password)

    def user(self, username: str, admin: HubClient | None = None) -> HubClient:
        """Sign up, have ``admin`` approve (unless it is the admin), log in; return the session."""
        client = self.client(username)
        client.signup()
        if admin is not None:
            admin.authorize(username)
        assert client.login(), f"{username} could not log in:\n{self.log_tail()}"
        return client

    def stop(self) -> None:
        super().stop()
        kill_tree_under(self.data_dir)

def jukkr_installation():
    """The default JuKKR installation (``make install`` builds it); built from JUKKR_SOURCE when missing.

    In CI a missing build fails: `make install` must have made it, and a test must not hide that."""
    from mlkkr.jukkr.build import build, find_installation

    inst = find_installation()
    if inst is None or inst.problems():
        if IN_CI:
            raise AssertionError("no intact JuKKR build in the default prefix: `make install` builds it "
                                 "(mlkkr jukkr build)")
        build(source=JUKKR_SOURCE, progress=False)
        inst = find_installation()
    return inst


def aiida_run(home: Path, code: str, timeout: float = 180) -> str:
    """Run Python ``code`` against the AiiDA profile of the user whose home is ``home``."""
    env = dict(os.environ, AIIDA_PATH=str(home), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout
