"""Fixtures of the chart tests (see chartlib for why the chart is rendered without its dependency)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from .chartlib import CHART, Z2JH_SCHEMA, run, strip_required, tool


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def own_chart(tmp_path_factory) -> Path:
    """A copy of the chart without its dependency on the official chart (see chartlib)."""
    copy = tmp_path_factory.mktemp("chart") / "mlkkr"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta.pop("dependencies", None)
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy


@pytest.fixture(scope="session")
def render(helm, own_chart):
    """render(*helm args) -> list of manifests (dicts) of `helm template`."""

    def _render(*args: str) -> list[dict]:
        out = run([helm, "template", "mlkkr", str(own_chart), "--namespace", "mlkkr", *args]).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    return _render


@pytest.fixture(scope="session")
def z2jh_validator():
    import jsonschema

    if not Z2JH_SCHEMA.exists():
        pytest.fail(f"the official jupyterhub values schema is missing: {Z2JH_SCHEMA} "
                    "(set MLKKR_SHARED to the shared folder)")
    schema = yaml.safe_load(Z2JH_SCHEMA.read_text())
    return jsonschema.Draft7Validator(strip_required(schema))
