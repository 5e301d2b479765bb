"""Input files of ``mlkkr engine exchange|embed``: TOML or YAML, validated into engine objects.

Layout (TOML; YAML has the same keys)::

    [host]                 # or: host = "ti"
    name = "ti"            # "ti" or "metal"; any preset field may be overridden (eV, Å)
    fermi_level = 1.1
    [kgrid]                # or: kgrid = 24 (4 … 256; the default cap n_max = 64 follows a larger n)
    n = 24                 # base k points per direction; n_max (>= n), c: see engine.KGrid
    [contour]
    kind = "matsubara"     # or "semicircle"; point counts, temperature (K), margin (eV)
    [[defects]]
    element = "Mn"
    position = [0, 0, 0]   # lattice units (integers)
    [[defects]]
    element = "Fe"
    position = [0, 0, 2]
    [exchange]             # exchange only
    pairs = [[0, 1]]       # default: all magnetic pairs
    screening = false      # true: screen the potentials self-consistently first ([scf])
    [scf]                  # radius (lattice units), mixer, mixing, history, tol (eV), max_iterations

Every error is an :class:`~mlkkr.errors.InputError` naming the field (``defects[1].element``,
``contour.n_poles``, ``INPUT`` for an unreadable file).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlkkr.errors import InputError
from mlkkr.greens import ENGINE_VERSION
from mlkkr.greens.contour import make_contour_params
from mlkkr.greens.defects import Defect, make_defects
from mlkkr.greens.engine import Engine, make_kgrid
from mlkkr.greens.hosts import make_host
from mlkkr.greens.scf import ScfParams, make_scf_params

TASKS = ("exchange", "embed")
_COMMON = ("host", "kgrid", "contour", "defects", "scf")


@dataclass
class RunSpec:
    """A validated run: the engine, the defects, the pairs and the screening parameters.

    ``parameters`` echoes every input parameter with its default filled in (for provenance).
    """

    task: str
    engine: Engine
    defects: list[Defect]
    pairs: list[tuple[int, int]] | None
    screening: bool
    scf: ScfParams
    parameters: dict[str, Any]


def load_input(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) input file into a dict."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InputError("INPUT", str(p.name), allowed="a .toml, .yaml or .yml file")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError("INPUT", str(p.name), reason=f"cannot read {p.name}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError("INPUT", str(p.name), reason=f"malformed {suffix[1:].upper()} in {p.name}: {msg}") from None
    if not isinstance(data, dict):
        raise InputError("INPUT", str(p.name), reason="the file must hold a table (mapping) at the top level")
    return data


def parse_input(data: dict[str, Any], task: str, *, cache: bool = False) -> RunSpec:
    """Validate an input mapping for ``task`` ("exchange" or "embed") into a :class:`RunSpec`.

    ``cache``: the engine keeps its host tables in the on-disk cache (:mod:`mlkkr.greens.cache`).
    """
    if task not in TASKS:
        raise InputError("task", task, allowed=TASKS)
    allowed = _COMMON + (("exchange",) if task == "exchange" else ())
    for key in data:
        if key not in allowed:
            raise InputError(str(key), data[key], allowed=allowed)

    host_in = data.get("host", "ti")
    if isinstance(host_in, str):
        host_in = {"name": host_in}
    _table("host", host_in)
    host = make_host(str(host_in.get("name", "ti")), **{k: v for k, v in host_in.items() if k != "name"})

    kg_in = data.get("kgrid")
    if kg_in is not None and not isinstance(kg_in, dict | int):
        raise InputError("kgrid", kg_in, reason="expected an integer or a table with n, n_max, c")
    kgrid = make_kgrid(kg_in)
    contour = make_contour_params(**_table("contour", data.get("contour", {})))
    if "defects" not in data:
        raise InputError("defects", None, reason="missing: give a list of {element, position}")
    defects = make_defects(data["defects"])
    scf = make_scf_params(**_table("scf", data.get("scf", {})))

    pairs: list[tuple[int, int]] | None = None
    screening = task == "embed"
    if task == "exchange":
        ex = _table("exchange", data.get("exchange", {}))
        for key in ex:
            if key not in ("pairs", "screening"):
                raise InputError(f"exchange.{key}", ex[key], allowed=["pairs", "screening"])
        screening = ex.get("screening", False)
        if not isinstance(screening, bool):
            raise InputError("exchange.screening", screening, allowed=[True, False])
        if "pairs" in ex:
            pairs = _pairs(ex["pairs"], defects)

    engine = Engine(host, kgrid, contour, cache=cache)
    engine.check_potentials([d.element for d in defects])
    sites = np.array([d.site for d in defects])
    span = sites.max(axis=0) - sites.min(axis=0) + (2 * scf.radius if screening else 0)
    if np.any(2 * span >= engine.n):
        raise InputError("defects", [list(d.site) for d in defects],
                         reason=f"the cluster{' with its screening region' if screening else ''} spans "
                                f"{span.tolist()} lattice constants; the k-grid n = {engine.n} must exceed "
                                "twice that (raise kgrid.n or bring the defects closer)")
    params = {
        "engine_version": ENGINE_VERSION,
        "task": task,
        **engine.provenance(),
        "defects": [{"element": d.element, "position": list(d.site)} for d in defects],
        "scf": scf.to_dict(),
    }
    if task == "exchange":
        params["exchange"] = {"pairs": None if pairs is None else [list(p) for p in pairs], "screening": screening}
    return RunSpec(task, engine, defects, pairs, screening, scf, params)


def _table(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(name, value, reason="expected a table (mapping)")
    return value


def _pairs(value: Any, defects: list[Defect]) -> list[tuple[int, int]]:
    if not isinstance(value, list) or not value:
        raise InputError("exchange.pairs", value, reason="expected a non-empty list of [i, j] index pairs")
    out = []
    for n, p in enumerate(value):
        ok = isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 for x in p)
        if not ok:
            raise InputError(f"exchange.pairs[{n}]", p, reason="expected [i, j], indices into defects")
        i, j = p
        for x in (i, j):
            if not 0 <= x < len(defects) or not defects[x].params.magnetic:
                raise InputError(f"exchange.pairs[{n}]", list(p),
                                 reason=f"index {x} is not a magnetic defect (defects are numbered from 0)")
        if i == j:
            raise InputError(f"exchange.pairs[{n}]", list(p), reason="the two defects of a pair must differ")
        out.append((int(i), int(j)))
    return out
