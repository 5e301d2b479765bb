"""The file ``mlkkr hub`` hands to ``jupyterhub -f``.

It reads the settings that ``mlkkr hub`` validated and resolved (``$MLKKR_HUB_SETTINGS``, a JSON
file in the hub's state folder) and builds the configuration with :func:`mlkkr.hub.config.configure`.
"""

import json
import os

from mlkkr.hub.config import configure
from mlkkr.settings import Settings

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

with open(os.environ["MLKKR_HUB_SETTINGS"]) as handle:
    configure(c, Settings(json.load(handle)))
