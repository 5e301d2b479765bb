"""Parsers of the mlkkr CalcJobs (entry points ``mlkkr.engine``, ``mlkkr.train``, ``mlkkr.evaluate``).

How a failed job is told apart (the CalcJob's exit codes):

* output present and valid → success;
* no output and ``Error: …`` on stderr → 400 (mlkkr rejected the input; its message is kept);
* no output and a Python traceback on stderr → 401 (a crash; the last line is kept);
* no output and nothing said → 300: the process was killed (signal, out of memory, walltime, node
  loss) — the case that a restart can fix, handled by :class:`~mlkkr.aiida.workflows.EngineBaseWorkChain`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from mlkkr.aiida.calculations import DATASET_FILE, MODEL_FOLDER, STDERR, STDOUT
from mlkkr.aiida.nodes import DatasetData, ModelData
from mlkkr.errors import InputError


class MlkkrParser(Parser):
    """Shared helpers: stderr diagnosis and the JSON summary on stdout."""

    def _text(self, name: str) -> str:
        try:
            return self.retrieved.base.repository.get_object_content(name)
        except (FileNotFoundError, OSError):
            return ""

    def missing_output(self) -> ExitCode:
        """The exit code for a job that left no output: rejected input, crash, or killed."""
        stderr = self._text(STDERR)
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("Error:") or ln.startswith("Usage:")]
        if errors:
            message = next((ln for ln in lines if ln.startswith("Error:")), errors[-1])
            return self.exit_codes.ERROR_INPUT_REJECTED.format(message=message.removeprefix("Error:").strip())
        if "Traceback" in stderr:
            return self.exit_codes.ERROR_COMMAND_FAILED.format(message=lines[-1] if lines else "traceback")
        return self.exit_codes.ERROR_OUTPUT_MISSING

    def summary(self) -> dict[str, Any] | None:
        """The command's ``--json`` summary, or None when stdout is not JSON."""
        try:
            value = json.loads(self._text(STDOUT))
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


class EngineParser(MlkkrParser):
    """``dataset`` (DatasetData) and ``summary`` (Dict) of an :class:`~mlkkr.aiida.calculations.EngineCalculation`."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        temporary = kwargs.get("retrieved_temporary_folder")
        path = Path(temporary) / DATASET_FILE if temporary else None
        if path is None or not path.is_file():
            return self.missing_output()
        try:
            dataset = DatasetData(path)
        except InputError as exc:
            return self.exit_codes.ERROR_INVALID_OUTPUT.format(message=str(exc))
        params = self.node.inputs.parameters.get_dict()
        if self.node.inputs.command.value.startswith("data") and dataset.n_records != int(params["n"]):
            return self.exit_codes.ERROR_RECORD_COUNT.format(expected=int(params["n"]), found=dataset.n_records)
        summary = self.summary()
        if summary is None:
            return self.exit_codes.ERROR_STDOUT_INVALID
        summary.pop("output", None)  # the job's own file name: not a result
        self.out("dataset", dataset)
        self.out("summary", orm.Dict(summary))
        return None


class TrainParser(MlkkrParser):
    """``model`` (ModelData) and ``metrics`` (Dict) of a :class:`~mlkkr.aiida.calculations.TrainCalculation`."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        temporary = kwargs.get("retrieved_temporary_folder")
        folder = Path(temporary) / MODEL_FOLDER if temporary else None
        if folder is None or not (folder / "model.json").is_file():
            return self.missing_output()
        summary = self.summary()
        if summary is None:
            return self.exit_codes.ERROR_STDOUT_INVALID
        try:
            model = ModelData(folder)
        except InputError as exc:
            return self.exit_codes.ERROR_INVALID_OUTPUT.format(message=str(exc))
        summary.pop("model", None)
        self.out("model", model)
        self.out("metrics", orm.Dict(summary))
        return None


class EvaluateParser(MlkkrParser):
    """``metrics`` (Dict) of an :class:`~mlkkr.aiida.calculations.EvaluateCalculation`."""

    def parse(self, **kwargs: Any) -> ExitCode | None:
        summary = self.summary()
        if summary is None:
            if self._text(STDOUT).strip():
                return self.exit_codes.ERROR_STDOUT_INVALID
            return self.missing_output()
        for key in ("model", "data"):
            summary.pop(key, None)  # the job's own file names; plots (if any) are in `retrieved`
        self.out("metrics", orm.Dict(summary))
        return None
