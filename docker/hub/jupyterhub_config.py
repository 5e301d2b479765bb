"""JupyterHub configuration of the hub image (single-host mode, DockerSpawner).

Settings: the TOML file at ``$MLKKR_CONFIG`` (mlkkr.settings; the image's default is
/etc/mlkkr/mlkkr.toml), then any ``MLKKR_SETTING_<SECTION>__<KEY>`` variable, e.g.
``MLKKR_SETTING_DOCKER__IMAGE=localhost/mlkkr-singleuser:gpu`` or ``MLKKR_SETTING_HUB__ADMIN=alice``.
An empty variable counts as unset. A value is read as a TOML value where it parses as one
(``8000``, ``true``, ``2.0``), else as a string.
Everything is validated by mlkkr.settings: a wrong key or value stops the hub with a message naming it.
"""

import os
import tomllib

from mlkkr.hub.docker import configure_docker
from mlkkr.settings import load_settings

PREFIX = "MLKKR_SETTING_"


def env_overrides(environ=os.environ) -> dict:
    overrides = {}
    for name, raw in environ.items():
        if not name.startswith(PREFIX) or "__" not in name[len(PREFIX):] or raw == "":
            continue
        section, key = name[len(PREFIX):].lower().split("__", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        overrides[f"{section}.{key}"] = value
    return overrides


c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file
configure_docker(c, load_settings(overrides=env_overrides()))
