"""Health of the user's AiiDA stack and hub, in the manner of ``verdi status``.

:func:`collect` returns one :class:`Check` per component (profile, storage, broker, daemon, JuKKR codes, hub). A
component that is *down* makes :func:`exit_code` non-zero; *skipped* means not configured (e.g. no
broker), which is not a failure.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

UP, DOWN, WARNING, SKIPPED = "up", "down", "warning", "skipped"


@dataclass
class Check:
    name: str
    state: str
    detail: str


def _profile_checks() -> tuple[list[Check], object | None]:
    from aiida.manage.configuration import get_config, load_profile

    try:
        config = get_config(create=False)
        name = config.default_profile_name
        if not name:
            return [Check("profile", DOWN, f"no profile in {config.dirpath}; run `mlkkr setup`")], None
        profile = load_profile(name, allow_switch=True)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return [Check("profile", DOWN, f"cannot read the AiiDA configuration: {exc}; run `mlkkr setup`")], None
    return [Check("profile", UP, f"{profile.name} ({config.dirpath})")], profile


def _storage_check(profile) -> Check:
    from aiida.common.exceptions import IncompatibleStorageSchema

    try:
        storage = profile.storage_cls(profile)
    except IncompatibleStorageSchema:
        return Check("storage", DOWN, "schema out of date; run `mlkkr setup` (it migrates)")
    except Exception as exc:  # noqa: BLE001
        return Check("storage", DOWN, f"{profile.storage_backend} unreachable: {exc}")
    try:
        from aiida import orm

        count = orm.QueryBuilder().append(orm.Node).count()
        return Check("storage", UP, f"{storage} ({count} nodes)")
    finally:
        storage.close()


def _broker_and_daemon_checks(profile) -> list[Check]:
    from aiida.engine.daemon.client import DaemonNotRunningException
    from aiida.manage import get_manager

    if profile.process_control_backend is None:
        return [Check("broker", SKIPPED, "none configured: processes run in the foreground, no daemon"),
                Check("daemon", SKIPPED, "needs a broker")]
    checks = []
    manager = get_manager()
    broker = manager.get_broker()
    zeromq = profile.process_control_backend == "core.zeromq"
    if not zeromq:
        try:
            broker.get_communicator()
            checks.append(Check("broker", UP, str(broker)))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("broker", DOWN, f"{broker} unreachable: {exc}"))
        finally:
            broker.close()
    try:
        status = manager.get_daemon_client().get_status()
        daemon = Check("daemon", UP, f"running, PID {status.get('pid')}")
    except DaemonNotRunningException:
        daemon = Check("daemon", DOWN, "not running; start it with `verdi daemon start`")
    except Exception as exc:  # noqa: BLE001
        daemon = Check("daemon", DOWN, f"unknown state: {exc}")
    if zeromq:
        info = broker.probe_service_status() if daemon.state == UP else {}
        if info.get("connected"):
            checks.append(Check("broker", UP, f"ZeroMQ (PID {info.get('pid')}, "
                                              f"{info.get('pending_tasks')} pending tasks)"))
        else:
            checks.append(Check("broker", DOWN, "ZeroMQ broker not running; it starts with the daemon"))
    checks.append(daemon)
    return checks


def _jukkr_check() -> Check:
    """The JuKKR codes of the profile: down when installed but missing or broken in the profile."""
    from mlkkr.aiida.jukkr_codes import report
    from mlkkr.jukkr.build import find_installation

    if find_installation() is None:
        return Check("jukkr", WARNING, "no JuKKR build on this server (`mlkkr jukkr build`): real KKR "
                     "calculations can run only on other computers")
    try:
        state = report()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check("jukkr", DOWN, f"cannot read the codes: {exc}")
    from mlkkr.aiida.kkr_compat import hook_installed, pth_path

    if state["ok"] and not hook_installed():
        return Check("jukkr", DOWN, f"{state['detail']}; but the aiida-kkr fixes are not hooked into this "
                     f"environment ({pth_path()} missing: reinstall mlkkr or run `make install`)")
    return Check("jukkr", UP if state["ok"] else DOWN, state["detail"])


def _hub_check(hub_url: str | None) -> Check:
    api = hub_url or os.environ.get("JUPYTERHUB_API_URL")
    if not api:
        return Check("hub", SKIPPED, "no hub configured (not in a hub-spawned server; use --hub URL)")
    url = api.rstrip("/")
    url = url if url.endswith("/hub/api") else f"{url}/hub/api"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            version = json.loads(response.read()).get("version", "?")
        return Check("hub", UP, f"JupyterHub {version} at {url}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("hub", DOWN, f"{url} not answering: {exc}")


def collect(hub_url: str | None = None) -> list[Check]:
    """Check every component; never raises."""
    checks, profile = _profile_checks()
    if profile is not None:
        checks.append(_storage_check(profile))
        checks += _broker_and_daemon_checks(profile)
        checks.append(_jukkr_check())
    checks.append(_hub_check(hub_url))
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.state == DOWN for c in checks) else 0


def as_dict(checks: list[Check]) -> dict:
    return {"ok": exit_code(checks) == 0, "checks": [asdict(c) for c in checks]}
