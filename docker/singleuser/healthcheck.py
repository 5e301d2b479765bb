#!/usr/bin/env python3
"""Container healthcheck: the Jupyter server answers its API on its own port (exit 0), else exit 1.

Works both when spawned by a hub (``JUPYTERHUB_SERVICE_URL`` gives port and prefix) and when run on
its own (``MLKKR_PORT``, default 8888).
"""

import os
import sys
import urllib.request
from urllib.parse import urlparse

service = os.environ.get("JUPYTERHUB_SERVICE_URL")
if service:
    parsed = urlparse(service)
    url = f"http://127.0.0.1:{parsed.port or 8888}{parsed.path.rstrip('/')}/api"
else:
    url = f"http://127.0.0.1:{os.environ.get('MLKKR_PORT', '8888')}/api"
try:
    with urllib.request.urlopen(url, timeout=8) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"healthcheck: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
