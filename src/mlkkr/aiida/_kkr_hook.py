"""Import hook: apply :mod:`mlkkr.aiida.kkr_compat` to aiida-kkr/masci-tools modules as they are imported.

Imported at interpreter start by ``mlkkr-aiida-kkr-compat.pth`` (so in daemon workers and kernels
alike); it imports nothing but ``sys`` (2.5 ms at start-up). When one of the modules that need a fix
has been executed, its loader hands it to :func:`mlkkr.aiida.kkr_compat.apply`.
"""

from __future__ import annotations

import sys

#: the modules that :mod:`mlkkr.aiida.kkr_compat` fixes (kept here to avoid importing it at start-up)
TARGETS = frozenset({
    "masci_tools.io.parsers.kkrimp_parser_functions",
    "masci_tools.io.parsers.kkrparser_functions",
    "aiida_kkr.calculations.kkrimp",
    "aiida_kkr.workflows.jijs",
    "aiida_kkr.tools.jij_tools",
    "aiida_kkr.workflows.kkr_imp",
})


class _Loader:  # the loader protocol (importlib.abc would import importlib.resources: 30 ms at every start)
    def __init__(self, inner) -> None:
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        from mlkkr.aiida import kkr_compat

        kkr_compat.apply(module)

    def __getattr__(self, name):  # get_source, get_code … of the real loader
        return getattr(self.inner, name)


class _Finder:  # the meta path finder protocol
    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
