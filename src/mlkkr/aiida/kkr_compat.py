"""The fixes mlkkr applies to aiida-kkr 2.3.1 with masci-tools 0.15.0 on numpy 2 — one small function each.

aiida-kkr 2.3.1 and masci-tools 0.15.0 are the newest releases on PyPI; on the path that real JuKKR runs
take here (host SCF, impurity embedding, Jij) they fail in the places below. Each fix changes as little
as possible, copies no aiida-kkr code, and names the upstream line it works around (aiida-kkr 2.3.1,
masci-tools 0.15.0). :data:`FIXES` lists them; ``reverted(name)`` undoes one for a test that shows the
failure without it.

======================  ==========================================================================
``kkrimp_parser_kwargs``  aiida_kkr/parsers/kkrimp.py:128 calls masci-tools'
                        ``KkrimpParserFunctions.parse_kkrimp_outputfile(..., ignore_nan=, doscalc=)``,
                        which in masci-tools 0.15.0 (kkrimp_parser_functions.py:322) takes neither:
                        every KKRimp calculation fails to parse (TypeError). Fix: the method accepts
                        and ignores the two keywords.
``kkrimp_rms_ldau``     aiida_kkr/workflows/kkr_imp_sub.py:935 reads
                        ``convergence_group['rms_LDAU']``, which the parser never writes without LDA+U:
                        the impurity SCF stops with AttributeError after its first calculation. Fix:
                        the parsed convergence group gets ``rms_LDAU = 0.0`` when absent.
``kkrimp_one_atom``     aiida_kkr/calculations/kkrimp.py:592 ``np.where(diff == diff.min())`` on the
                        scalar distance of a one-atom cluster: numpy 2 refuses nonzero on 0-d input.
                        Fix: that module's ``np`` is a view of numpy whose one-argument ``where``
                        takes ``atleast_1d`` of its condition.
``jij_np_product``      aiida_kkr/workflows/jijs.py:373 and tools/jij_tools.py:498 call ``np.product``,
                        removed in numpy 2 (kkr_jij_wc with ``accuracy.kmesh``). Fix: the same numpy
                        view in those two modules has ``product = numpy.prod``.
``parse_array_linear``  masci_tools/io/parsers/kkrparser_functions.py:52 ``parse_array_float`` finds each
                        matching line by searching the output from its top again and popping it: time
                        ∝ lines × matches. On a 20-atom impurity pair (700,000 lines of ``out_log``,
                        thousands of matches per quantity) the KKRimp parser ran for over ten minutes in
                        the daemon worker, holding up every other process of the user. Fix: one pass over
                        the lines with the same parsing of each match — the same array in the same order.
``jij_tensor_frames``   aiida_kkr/tools/jij_tools.py:178-186 (``expand_jijs_dmi``) assembles the symmetric
                        part of the full J_ij tensor from the runs with m ∥ x and m ∥ y as if JuKKR's local
                        frames there were (y, z, x) and (x, z, −y)… : J_yz gets the wrong sign and the
                        diagonal elements the wrong S terms. JuKKR rotates by R_z(φ)·R_y(θ): the local
                        (x′, y′) are (−z, y) for m ∥ x and (−z, −x) for m ∥ y. Measured on bcc Fe: aiida-kkr's
                        tensors break the crystal's own 48 point operations by 0.029 meV (as large as the
                        anisotropy), the re-assembled ones by 7e-8 meV. Fix: the nine tensor columns are
                        recomputed by :func:`full_tensor` (J = Tr/3 and D are unchanged).
``imp_gf_failure``      aiida_kkr/workflows/kkr_imp.py:669 reads ``gf_writeout.outputs.workflow_info``
                        after a failed host-GF write-out: NotExistentAttributeError and an excepted
                        work chain instead of an exit code. Fix: ``construct_startpot`` first returns
                        exit code 146 (``ERROR_GF_WRITEOUT_FAILURE``) when the write-out failed.
======================  ==========================================================================

Two more defects are handled where the inputs are made (:mod:`mlkkr.aiida.kkr`), not here: voronoi
reads ``EFSET`` while aiida_kkr/workflows/voro_start.py:559 writes ``EF_SET`` (the impurity's starting
potential silently gets a wrong Fermi level: the impurity builder passes ``voro_params_overwrite =
{'EFSET': host E_F}``), and a NSPIN 1 host cannot take a magnetic impurity (the builder refuses).

Where the fixes act: every Python process of this environment. The package installs
``mlkkr-aiida-kkr-compat.pth`` into site-packages (a wheel data file; ``make install`` copies it for
an editable install). It imports :mod:`mlkkr.aiida._kkr_hook`, a tiny import hook that calls
:func:`apply` for a module right after it is first imported — so the daemon workers (which import
aiida-kkr through entry points) and the kernels get the same fixes, and nothing heavy is imported at
start-up. :func:`install` does the same from Python (``mlkkr.aiida.kkr`` calls it);
:func:`hook_installed` tells ``mlkkr status`` whether the .pth is in place.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

PTH_NAME = "mlkkr-aiida-kkr-compat.pth"
_MARK = "__mlkkr_fix__"


@dataclass(frozen=True)
class Fix:
    name: str
    module: str
    apply: Callable[[types.ModuleType], None]
    revert: Callable[[types.ModuleType], None]
    upstream: str


# --------------------------------------------------------------------------- the KKRimp parser (1, 2)

_PARSER_MODULE = "masci_tools.io.parsers.kkrimp_parser_functions"
#: the fixes in effect; the wrappers below are installed once and consult this set on every call
ENABLED: set[str] = set()


def _wrap_once(owner: Any, attribute: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, attribute)
    if getattr(original, _MARK, False):
        return
    wrapped = functools.wraps(original)(make(original))
    setattr(wrapped, _MARK, True)
    setattr(owner, attribute, wrapped)


def _parser_wrapper(original: Callable) -> Callable:
    def parse_kkrimp_outputfile(self, out_dict, file_dict, debug=False, **kwargs):
        if "kkrimp_parser_kwargs" in ENABLED:
            kwargs.pop("ignore_nan", None)
            kwargs.pop("doscalc", None)
        success, messages, out = original(self, out_dict, file_dict, debug=debug, **kwargs)
        if "kkrimp_rms_ldau" in ENABLED and isinstance(out.get("convergence_group"), dict):
            out["convergence_group"].setdefault("rms_LDAU", 0.0)
        return success, messages, out

    return parse_kkrimp_outputfile


def _enable_parser_fix(name: str) -> Callable[[types.ModuleType], None]:
    def enable(module: types.ModuleType) -> None:
        _wrap_once(module.KkrimpParserFunctions, "parse_kkrimp_outputfile", _parser_wrapper)
        ENABLED.add(name)

    return enable


def _disable(name: str) -> Callable[[types.ModuleType], None]:
    return lambda module: ENABLED.discard(name)


# ------------------------------------------------------------------------------ numpy 2 (5, 4)


class Numpy2View(types.ModuleType):
    """numpy, with the two numpy-1 behaviours aiida-kkr 2.3.1 relies on; everything else is numpy's."""

    def __init__(self) -> None:
        super().__init__("numpy", "numpy as seen by aiida-kkr 2.3.1 (mlkkr.aiida.kkr_compat)")

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)

    @staticmethod
    def where(condition, *args):
        """``numpy.where``; with one argument, a scalar condition is taken as a 1-element array."""
        return numpy.where(condition, *args) if args else numpy.where(numpy.atleast_1d(condition))

    product = staticmethod(numpy.prod)


_NUMPY_VIEW = Numpy2View()


def _bind_numpy_view(module: types.ModuleType) -> None:
    module.np = _NUMPY_VIEW


def _unbind_numpy_view(module: types.ModuleType) -> None:
    module.np = numpy


# ------------------------------------------------------------------------ the quadratic parse (8)

_KKRPARSER_MODULE = "masci_tools.io.parsers.kkrparser_functions"
_ORIGINAL_PARSE_ARRAY: dict[str, Callable] = {}


def _parse_array_float_linear(outfile, searchstring, splitinfo, replacepair=None, debug=False):
    """masci-tools' ``parse_array_float`` in one pass: every line holding ``searchstring``, in file order,
    parsed as the original does (``splitinfo`` mode 1: split at [1], take [2]; mode 2: then split at
    whitespace and take [3]; ``replacepair`` replaced first)."""
    from masci_tools.io.common_functions import get_outfile_txt

    if splitinfo[0] not in (1, 2):
        raise ValueError("splitinfo[0] has to be either 1 or 2")
    res = []
    for line in get_outfile_txt(outfile):
        if searchstring not in line:
            continue
        if replacepair is not None:
            line = line.replace(replacepair[0], replacepair[1])
        part = line.split(splitinfo[1])[splitinfo[2]]
        res.append(float(part if splitinfo[0] == 1 else part.split()[splitinfo[3]]))
    return numpy.array(res)


def _linear_parse(module: types.ModuleType) -> None:
    _ORIGINAL_PARSE_ARRAY.setdefault("parse_array_float", module.parse_array_float)
    module.parse_array_float = _parse_array_float_linear


def _quadratic_parse(module: types.ModuleType) -> None:
    module.parse_array_float = _ORIGINAL_PARSE_ARRAY.get("parse_array_float", module.parse_array_float)


# ------------------------------------------------------------------- the J_ij tensor frames (9)

_JIJ_TOOLS = "aiida_kkr.tools.jij_tools"
_ORIGINAL_EXPAND: dict[str, Callable] = {}


def full_tensor(jz: Any, jx: Any, jy: Any) -> numpy.ndarray:
    """The symmetric part of J_ij (3×3, meV) from one pair's rows of the ``Jij.atom*`` files of the three
    KKRhost runs with m ∥ z, x, y (columns: |R|, J, D, S, A, … in Ry).

    Each run gives, in its local frame (x′, y′, z′ = m), J = (J_x′x′ + J_y′y′)/2, S = (J_x′x′ − J_y′y′)/2 and
    A = J_x′y′. JuKKR's local frame is the global one rotated by R_z(φ)·R_y(θ): (x′, y′) = (x, y) for m ∥ z
    (θ = 0), (−z, y) for m ∥ x (θ = 90°, φ = 0) and (−z, −x) for m ∥ y (θ = 90°, φ = 90°). Every diagonal
    element is seen by two runs and averaged."""
    from masci_tools.util.constants import RY_TO_EV_KKR  # aiida-kkr's own conversion

    jz, jx, jy = (numpy.asarray(v, float) for v in (jz, jx, jy))
    t = numpy.empty((3, 3))
    t[0, 0] = (jz[1] + jz[3] + jy[1] - jy[3]) / 2  # J_xx: x′x′ of the z run, y′y′ of the y run
    t[1, 1] = (jz[1] - jz[3] + jx[1] - jx[3]) / 2  # J_yy: y′y′ of the z and x runs
    t[2, 2] = (jx[1] + jx[3] + jy[1] + jy[3]) / 2  # J_zz: x′x′ of the x and y runs
    t[0, 1] = t[1, 0] = jz[4]  # x′y′ = xy
    t[1, 2] = t[2, 1] = -jx[4]  # x′y′ = (−z)(y)
    t[0, 2] = t[2, 0] = jy[4]  # x′y′ = (−z)(−x)
    return t * (1000 * RY_TO_EV_KKR)


def _expand_with_frames(jijs_shells_x, jijs_shells_y, jijs_shells_z, *args, **kwargs):
    """aiida-kkr's ``expand_jijs_dmi`` (rows in the order of the m ∥ z run, unchanged), its nine tensor
    columns replaced by :func:`full_tensor`."""
    expanded, positions = _ORIGINAL_EXPAND["expand_jijs_dmi"](jijs_shells_x, jijs_shells_y, jijs_shells_z,
                                                              *args, **kwargs)
    for row, (jz, jx, jy) in enumerate(zip(jijs_shells_z, jijs_shells_x, jijs_shells_y, strict=True)):
        expanded[row, 9:18] = full_tensor(jz, jx, jy).ravel()
    return expanded, positions


def _fix_frames(module: types.ModuleType) -> None:
    _ORIGINAL_EXPAND.setdefault("expand_jijs_dmi", module.expand_jijs_dmi)
    module.expand_jijs_dmi = _expand_with_frames


def _aiida_kkr_frames(module: types.ModuleType) -> None:
    module.expand_jijs_dmi = _ORIGINAL_EXPAND.get("expand_jijs_dmi", module.expand_jijs_dmi)


# ------------------------------------------------------------------------- failed GF write-out (7)

GF_FAILURE_STATUS = 146


def _construct_startpot_wrapper(original: Callable) -> Callable:
    def construct_startpot(self):
        gf = self.ctx.get("gf_writeout") if self.ctx.get("do_gf_calc") else None
        if "imp_gf_failure" in ENABLED and gf is not None and not gf.is_finished_ok:
            self.report(f"ERROR: host GF write-out {gf.process_label}<{gf.pk}> failed "
                        f"(exit status {gf.exit_status}): {gf.exit_message or gf.process_state}")
            return self.exit_codes.ERROR_GF_WRITEOUT_FAILURE  # pylint: disable=no-member
        return original(self)

    return construct_startpot


def _guard_gf_writeout(module: types.ModuleType) -> None:
    """Wrap ``construct_startpot`` *before* the process spec is built: plumpy's outline keeps the function
    objects it was given in ``define``, so a spec built earlier is dropped and rebuilt with the wrapper."""
    wc = module.kkr_imp_wc
    if not getattr(wc.construct_startpot, _MARK, False):
        _wrap_once(wc, "construct_startpot", _construct_startpot_wrapper)
        if "_spec" in wc.__dict__:
            del wc._spec
    spec = wc.spec()
    if "ERROR_GF_WRITEOUT_FAILURE" not in spec.exit_codes:
        spec.exit_code(GF_FAILURE_STATUS, "ERROR_GF_WRITEOUT_FAILURE",
                       message="ERROR: the host Green-function write-out (kkr_flex_wc) failed")
    ENABLED.add("imp_gf_failure")


# ---------------------------------------------------------------------------------------- registry

FIXES: dict[str, Fix] = {f.name: f for f in (
    Fix("kkrimp_parser_kwargs", _PARSER_MODULE, _enable_parser_fix("kkrimp_parser_kwargs"),
        _disable("kkrimp_parser_kwargs"),
        "aiida_kkr/parsers/kkrimp.py:128 passes ignore_nan/doscalc, masci-tools 0.15.0 takes neither"),
    Fix("kkrimp_rms_ldau", _PARSER_MODULE, _enable_parser_fix("kkrimp_rms_ldau"), _disable("kkrimp_rms_ldau"),
        "aiida_kkr/workflows/kkr_imp_sub.py:935 reads convergence_group['rms_LDAU'], never parsed"),
    Fix("kkrimp_one_atom", "aiida_kkr.calculations.kkrimp", _bind_numpy_view, _unbind_numpy_view,
        "aiida_kkr/calculations/kkrimp.py:592 np.where on a 0-d array (one-atom cluster), refused by numpy 2"),
    Fix("jij_np_product", "aiida_kkr.workflows.jijs", _bind_numpy_view, _unbind_numpy_view,
        "aiida_kkr/workflows/jijs.py:373 np.product, removed in numpy 2"),
    Fix("jij_tools_np_product", "aiida_kkr.tools.jij_tools", _bind_numpy_view, _unbind_numpy_view,
        "aiida_kkr/tools/jij_tools.py:498 np.product, removed in numpy 2"),
    Fix("parse_array_linear", _KKRPARSER_MODULE, _linear_parse, _quadratic_parse,
        "masci_tools/io/parsers/kkrparser_functions.py:52 parse_array_float rescans the output per match"),
    Fix("jij_tensor_frames", _JIJ_TOOLS, _fix_frames, _aiida_kkr_frames,
        "aiida_kkr/tools/jij_tools.py:178 assembles J_ij's symmetric part in the wrong local frames"),
    Fix("imp_gf_failure", "aiida_kkr.workflows.kkr_imp", _guard_gf_writeout, _disable("imp_gf_failure"),
        "aiida_kkr/workflows/kkr_imp.py:669 reads outputs of a failed GF write-out"),
)}

#: module name -> the fixes applied when it is imported (read by mlkkr.aiida._kkr_hook)
MODULES: dict[str, list[str]] = {}
for _fix in FIXES.values():
    MODULES.setdefault(_fix.module, []).append(_fix.name)


def apply(module: types.ModuleType) -> None:
    """Apply every fix of ``module`` (idempotent)."""
    for name in MODULES.get(module.__name__, ()):
        FIXES[name].apply(module)


def install() -> None:
    """Apply the fixes to the modules already imported and hook the others (idempotent)."""
    from mlkkr.aiida import _kkr_hook

    _kkr_hook.install()
    for name in MODULES:
        if name in sys.modules:
            apply(sys.modules[name])


def applied() -> dict[str, bool]:
    """Which fixes are in effect in this process (importing the modules concerned)."""
    install()
    out = {}
    for fix in FIXES.values():
        module = importlib.import_module(fix.module)
        if fix.apply is _bind_numpy_view:
            out[fix.name] = module.np is _NUMPY_VIEW
        elif fix.name == "parse_array_linear":
            out[fix.name] = module.parse_array_float is _parse_array_float_linear
        elif fix.name == "jij_tensor_frames":
            out[fix.name] = module.expand_jijs_dmi is _expand_with_frames
        elif fix.name == "imp_gf_failure":
            out[fix.name] = fix.name in ENABLED and _outline_calls_wrapper(module.kkr_imp_wc, "construct_startpot")
        else:
            out[fix.name] = fix.name in ENABLED
    return out


def _outline_calls_wrapper(wc: Any, name: str) -> bool:
    """Whether the work chain's outline (what the engine steps through) calls our wrapper of ``name``."""
    found = []

    def walk(item: Any) -> None:
        fn = getattr(item, "_fn", None)
        if fn is not None and getattr(fn, "__name__", "") == name:
            found.append(bool(getattr(fn, _MARK, False)))
        for attr in ("_instruction", "_ifs", "_body", "_commands"):
            value = getattr(item, attr, None)
            if value is None:
                continue
            for child in (value if isinstance(value, list | tuple) or hasattr(value, "__getitem__") else [value]):
                walk(child)

    walk(wc.spec().get_outline())
    return bool(found) and all(found)


@contextlib.contextmanager
def reverted(name: str) -> Iterator[None]:
    """Undo the fix ``name`` inside the block (tests show the failure it prevents)."""
    fix = FIXES[name]
    module = importlib.import_module(fix.module)
    fix.revert(module)
    try:
        yield
    finally:
        fix.apply(module)


def pth_path() -> Path:
    """Where the start-up hook of this environment lives (site-packages of ``sys.prefix``)."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


PTH_LINE = "import importlib.util as _u; _u.find_spec('mlkkr') and __import__('mlkkr.aiida._kkr_hook')\n"


def hook_installed() -> bool:
    path = pth_path()
    return path.is_file() and path.read_text() == PTH_LINE


def write_pth(path: Path | None = None) -> Path:
    """Write the start-up hook into site-packages (``make install`` does, for an editable install)."""
    target = path or pth_path()
    target.write_text(PTH_LINE)
    return target
