"""The ``mlkkr`` code in the apps' code pickers.

The CalcJobs of :mod:`mlkkr.aiida.calculations` run the ``mlkkr`` command of an installed environment,
an ``InstalledCode`` labelled ``mlkkr`` by convention (:mod:`mlkkr.aiida.launch`). A new user's profile
has the ``localhost`` computer (made at spawn); :func:`ensure_local_code` makes ``mlkkr@localhost``
through :func:`mlkkr.aiida.launch.resolve_code` when it is missing. :class:`MlkkrCodeWidget` is
aiidalab-widgets-base's code picker (with its "Setup new code" for an HPC computer) listing only
mlkkr codes: those whose default plugin is one of mlkkr's CalcJobs or whose executable is ``mlkkr``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any


def ensure_local_code(computer: str = "localhost") -> Any:
    """``mlkkr@<computer>`` (made for a computer with the local transport); None when there is no such computer."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    from mlkkr.aiida.launch import resolve_code

    try:
        comp = orm.load_computer(computer)
    except NotExistent:
        return None
    return resolve_code(comp)


def is_mlkkr_code(code: Any) -> bool:
    plugin = code.default_calc_job_plugin or ""
    if plugin.startswith("mlkkr."):
        return True
    executable = getattr(code, "filepath_executable", None)
    return executable is not None and PurePosixPath(str(executable)).name == "mlkkr"


def mlkkr_code_widget(description: str = "Code", plugin: str = "mlkkr.engine"):
    """A ComputationalResourcesWidget that lists the mlkkr codes, the first one selected."""
    from aiida import orm
    from aiidalab_widgets_base import ComputationalResourcesWidget

    class MlkkrCodeWidget(ComputationalResourcesWidget):
        def _get_codes(self):  # the base filters by plugin; the mlkkr code has none set
            self.default_calc_job_plugin = None
            try:
                codes = super()._get_codes()
            finally:
                self.default_calc_job_plugin = plugin
            return [(label, uuid) for label, uuid in codes if is_mlkkr_code(orm.load_code(uuid))]

    widget = MlkkrCodeWidget(description=description, default_calc_job_plugin=plugin)
    options = widget.code_select_dropdown.options
    if options:
        widget.value = options[0][1]
    return widget
