"""Finished aiida-kkr results → mlkkr datasets, as calcfunctions (the dataset links back to its source).

The conversion itself is the readers' (another module's) business:
:mod:`mlkkr.aiida.readers_jij` (``kkr_jij_wc`` → :class:`~mlkkr.data.ExchangePair`, conventions
converted there and documented) and :mod:`mlkkr.aiida.readers_kkrimp` (KKRimp potentials →
:class:`~mlkkr.data.ImpurityEmbedding`). This module stores their records as a
:class:`~mlkkr.aiida.nodes.DatasetData` created by a calcfunction whose inputs are the aiida-kkr
output nodes, so the provenance graph runs from the JuKKR calculations to the dataset and on to any
model trained on it.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.engine import calcfunction

from mlkkr.aiida.nodes import DatasetData
from mlkkr.errors import InputError


@calcfunction
def jij_to_dataset(jij_data: orm.ArrayData, structure: orm.StructureData, env_cutoff: orm.Float) -> DatasetData:
    """Exchange pairs of a ``kkr_jij_wc`` result (``jij_data`` + ``structure_jij_sites``) as a dataset."""
    from mlkkr import __version__
    from mlkkr.aiida.readers_jij import pairs_from_jij_data
    from mlkkr.data.h5io import write_exchange

    pairs = pairs_from_jij_data(jij_data, structure, float(env_cutoff.value))
    params = {"source": "aiida-kkr kkr_jij_wc", "jij_data_uuid": jij_data.uuid, "structure_uuid": structure.uuid,
              "env_cutoff": float(env_cutoff.value), "mlkkr_version": __version__}
    with tempfile.TemporaryDirectory(prefix="mlkkr-jij-") as tmp:
        return DatasetData(write_exchange(Path(tmp) / DatasetData.FILENAME, pairs, params))


def exchange_dataset(workflow: orm.WorkflowNode, env_cutoff: float = 6.0) -> DatasetData:
    """The exchange pairs of a finished ``kkr_jij_wc`` as a stored dataset (linked to its outputs)."""
    from mlkkr.aiida.readers_jij import JIJ_WORKFLOWS

    if not isinstance(workflow, orm.WorkflowNode) or workflow.process_label not in JIJ_WORKFLOWS:
        raise InputError("workflow", getattr(workflow, "pk", workflow), allowed=JIJ_WORKFLOWS)
    if not workflow.is_finished_ok:
        raise InputError("workflow", workflow.pk, reason=f"did not finish ok (exit status {workflow.exit_status})")
    if not env_cutoff > 0:
        raise InputError("env_cutoff", env_cutoff, allowed="a positive distance in Å")
    from mlkkr.aiida.readers_jij import jij_crystal

    return jij_to_dataset(workflow.outputs.jij_data, jij_crystal(workflow), orm.Float(env_cutoff))


def kkrimp_reader() -> Any:
    """The KKRimp reader module (:mod:`mlkkr.aiida.readers_kkrimp`); InputError when it is not installed."""
    try:
        return importlib.import_module("mlkkr.aiida.readers_kkrimp")
    except ImportError as exc:
        raise InputError("reader", "kkrimp", reason=f"the KKRimp reader is not available ({exc})") from None
