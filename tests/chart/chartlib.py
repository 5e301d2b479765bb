"""Helpers of the chart tests: the real helm binary, an offline render of the chart, the official
Zero to JupyterHub values schema from ../shared/z2jh.

The official jupyterhub chart cannot be fetched here, and `helm template` refuses a chart whose
declared dependency is missing from charts/ (even when its condition is false). So:
- `helm lint` runs on the chart as it is (it reports the missing dependency as a warning only);
- `helm template` renders a copy whose Chart.yaml lists no dependency — that is, this chart's own
  templates, with this chart's values.schema.json applied — and
- the values under `jupyterhub:` are validated separately against the official chart's schema.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mlkkr"
SHARED = Path(os.environ.get("MLKKR_SHARED", ROOT.parent / "shared"))
Z2JH_SCHEMA = SHARED / "z2jh" / "values.schema.yaml"
BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str:
    """A tool from the project's .tools/bin or .venv/bin, else PATH; fail (never skip) if absent."""
    for path in (ROOT / ".tools" / "bin" / name, BIN / name):
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: run scripts/install-container-tools.sh (helm, kubectl) "
                    f"or pip install -e '.[deploy]' (kubernetes-validate, hadolint)")
    return found


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def strip_required(node):
    """The schema without `required`: the chart's own defaults (absent offline) provide those keys."""
    if isinstance(node, dict):
        return {k: strip_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [strip_required(v) for v in node]
    return node
