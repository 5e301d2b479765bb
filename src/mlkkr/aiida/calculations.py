"""CalcJobs that run the ``mlkkr`` command on a computer: the engine, training and evaluation.

The code of these CalcJobs is the ``mlkkr`` executable of an installed environment (an
``InstalledCode``), so the same job runs on this machine, a group server or an HPC node through any
AiiDA transport and scheduler. Every job writes ``stdout.json`` (the command's ``--json`` summary) and
``stderr.txt``; the parsers (:mod:`mlkkr.aiida.parsers`) turn the files into nodes.

Entry points (group ``aiida.calculations``):

* ``mlkkr.engine`` — :class:`EngineCalculation`: ``mlkkr data exchange|potential`` (a batch of a
  dataset) or ``mlkkr engine exchange|embed INPUT`` → ``dataset`` (:class:`~mlkkr.aiida.nodes.DatasetData`)
  and ``summary`` (Dict).
* ``mlkkr.train`` — :class:`TrainCalculation`: ``mlkkr train <kind> --data D.h5 -o model`` →
  ``model`` (:class:`~mlkkr.aiida.nodes.ModelData`) and ``metrics`` (Dict). With ``parent_folder`` (the
  remote folder of an interrupted training) it copies the checkpoint and adds ``--resume``.
* ``mlkkr.evaluate`` — :class:`EvaluateCalculation`: ``mlkkr evaluate model --data D.h5`` → ``metrics``.

Exit codes shared by the three (set by the parsers): 300 the job ended without its output (killed,
out of memory or time: worth a restart), 301 unreadable stdout, 310 invalid output file, 311 wrong
number of records, 400 mlkkr rejected the input (no restart helps), 401 mlkkr crashed.
"""

from __future__ import annotations

import os
from typing import Any

from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.common.folders import Folder
from aiida.engine import CalcJob, CalcJobProcessSpec

from mlkkr.aiida.cli_args import engine_command, model_command, to_argv
from mlkkr.aiida.nodes import DatasetData, ModelData
from mlkkr.errors import InputError

STDOUT = "stdout.json"
STDERR = "stderr.txt"
DATASET_FILE = "dataset.h5"
DATA_INPUT = "data.h5"
MODEL_FOLDER = "model"


def _param_names(command: Any) -> set[str]:
    return {p.name for p in command.params}


class MlkkrCalcJob(CalcJob):
    """Common part: one ``mlkkr`` command line, serial, JSON on stdout, the shared exit codes."""

    _PARSER = ""

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.inputs["metadata"]["options"]["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        spec.inputs["metadata"]["options"]["parser_name"].default = cls._PARSER
        spec.input("parameters", valid_type=orm.Dict, default=lambda: orm.Dict(),
                   serializer=orm.to_aiida_type,
                   help="Options of the mlkkr command by their Python names, e.g. {'kgrid': 12, 'host': 'metal'}.")
        spec.exit_code(300, "ERROR_OUTPUT_MISSING", invalidates_cache=True,
                       message="The job ended without writing its output (killed, out of memory or out of time).")
        spec.exit_code(301, "ERROR_STDOUT_INVALID", message="The JSON summary on stdout is missing or invalid.")
        spec.exit_code(310, "ERROR_INVALID_OUTPUT", message="The output is not valid: {message}")
        spec.exit_code(311, "ERROR_RECORD_COUNT", message="Expected {expected} records, the output holds {found}.")
        spec.exit_code(400, "ERROR_INPUT_REJECTED", message="mlkkr rejected the input: {message}")
        spec.exit_code(401, "ERROR_COMMAND_FAILED", message="mlkkr failed: {message}")

    def _calcinfo(self, argv: list[str]) -> CalcInfo:
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = argv
        codeinfo.stdout_name = STDOUT
        codeinfo.stderr_name = STDERR
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = []
        calcinfo.remote_copy_list = []
        calcinfo.retrieve_list = [STDOUT, STDERR]
        calcinfo.retrieve_temporary_list = []
        return calcinfo


def _validate_engine(inputs: dict[str, Any], _: Any) -> str | None:
    """Command known, parameters are its options, required options given, INPUT file where needed."""
    if "command" not in inputs:
        return None
    command = inputs["command"].value
    params = inputs["parameters"].get_dict() if "parameters" in inputs else {}
    try:
        cmd = engine_command(command)
        to_argv(cmd, params)
    except InputError as exc:
        return str(exc)
    for p in cmd.params:
        if getattr(p, "required", False) and p.name not in ("output", "input_file") and params.get(p.name) is None:
            return f"parameters.{p.name}: required by `mlkkr {command}`"
    if command.startswith("engine") and "input_file" not in inputs:
        return f"input_file: required by `mlkkr {command}` (the TOML or YAML input)"
    if command.startswith("data") and "input_file" in inputs:
        return f"input_file: `mlkkr {command}` takes no input file"
    return None


class EngineCalculation(MlkkrCalcJob):
    """Run the model Green-function engine: ``mlkkr data exchange|potential`` or ``mlkkr engine …``."""

    _PARSER = "mlkkr.engine"

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input("command", valid_type=orm.Str, serializer=orm.to_aiida_type,
                   help="'data exchange', 'data potential' (a batch of a dataset), 'engine exchange' or "
                        "'engine embed' (one cluster of input_file).")
        spec.input("input_file", valid_type=orm.SinglefileData, required=False,
                   help="Engine input (TOML or YAML) of `mlkkr engine exchange|embed`.")
        spec.inputs.validator = _validate_engine
        spec.output("dataset", valid_type=DatasetData, help="The records computed (HDF5, mlkkr schema).")
        spec.output("summary", valid_type=orm.Dict, help="The command's JSON summary.")

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        command = self.inputs.command.value
        cmd = engine_command(command)
        argv = command.split()
        copy: list[tuple[str, str, str]] = []
        if "input_file" in self.inputs:
            node = self.inputs.input_file
            name = "input" + os.path.splitext(node.filename)[1]
            copy.append((node.uuid, node.filename, name))
            argv.append(name)
        argv += ["-o", DATASET_FILE, "--json"]
        if "progress" in _param_names(cmd):
            argv.append("--no-progress")
        argv += to_argv(cmd, self.inputs.parameters.get_dict())
        calcinfo = self._calcinfo(argv)
        calcinfo.local_copy_list = copy
        # the HDF5 file goes into the DatasetData node only (not a second copy in `retrieved`)
        calcinfo.retrieve_temporary_list = [DATASET_FILE]
        return calcinfo


def _model_parameters_error(kind: str, which: str, inputs: dict[str, Any]) -> str | None:
    """The InputError message when ``parameters`` are not options of ``mlkkr <which> <kind>``, else None."""
    try:
        to_argv(model_command(kind, which), inputs["parameters"].get_dict() if "parameters" in inputs else {})
    except InputError as exc:
        return str(exc)
    return None


def _validate_train(inputs: dict[str, Any], _: Any) -> str | None:
    if "dataset" not in inputs:
        return None
    return _model_parameters_error(inputs["dataset"].kind, "train_cmd", inputs)


class TrainCalculation(MlkkrCalcJob):
    """Train a model on a dataset: ``mlkkr train <kind> --data data.h5 -o model`` (kind from the dataset)."""

    _PARSER = "mlkkr.train"

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input("dataset", valid_type=DatasetData, help="Training data (exchange pairs or embeddings).")
        spec.input("parent_folder", valid_type=orm.RemoteData, required=False,
                   help="Remote folder of an interrupted training of the same inputs: resume from its checkpoint.")
        spec.inputs.validator = _validate_train
        spec.output("model", valid_type=ModelData, help="The trained model folder.")
        spec.output("metrics", valid_type=orm.Dict, help="The training command's JSON summary (errors per split).")

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        dataset = self.inputs.dataset
        cmd = model_command(dataset.kind, "train_cmd")
        names = _param_names(cmd)
        argv = ["train", dataset.kind, "--data", DATA_INPUT, "-o", MODEL_FOLDER, "--json"]
        if "progress" in names:
            argv.append("--no-progress")
        argv += to_argv(cmd, self.inputs.parameters.get_dict())
        calcinfo = self._calcinfo([])
        calcinfo.local_copy_list = [(dataset.uuid, dataset.filename, DATA_INPUT)]
        if "parent_folder" in self.inputs:
            parent = self.inputs.parent_folder
            calcinfo.remote_copy_list = [(parent.computer.uuid, os.path.join(parent.get_remote_path(), MODEL_FOLDER),
                                          MODEL_FOLDER)]
            if "resume" in names:
                argv.append("--resume")
        calcinfo.codes_info[0].cmdline_params = argv
        calcinfo.retrieve_temporary_list = [MODEL_FOLDER]
        return calcinfo


def _validate_evaluate(inputs: dict[str, Any], _: Any) -> str | None:
    if "model" not in inputs or "dataset" not in inputs:
        return None
    model, dataset = inputs["model"], inputs["dataset"]
    if model.kind != dataset.kind:
        return f"dataset: a {dataset.kind} dataset cannot evaluate a {model.kind} model"
    return _model_parameters_error(model.kind, "evaluate_cmd", inputs)


class EvaluateCalculation(MlkkrCalcJob):
    """Evaluate a model on a dataset: ``mlkkr evaluate model --data data.h5 --json``."""

    _PARSER = "mlkkr.evaluate"

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input("model", valid_type=ModelData, help="The model to evaluate.")
        spec.input("dataset", valid_type=DatasetData,
                   help="Data to evaluate on (its training file: the model's held-out test split).")
        spec.inputs.validator = _validate_evaluate
        spec.output("metrics", valid_type=orm.Dict, help="Errors per component (the command's JSON summary).")

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        model = self.inputs.model
        cmd = model_command(model.kind, "evaluate_cmd")
        argv = ["evaluate", MODEL_FOLDER, "--data", DATA_INPUT, "--json"]
        argv += to_argv(cmd, self.inputs.parameters.get_dict())
        calcinfo = self._calcinfo(argv)
        calcinfo.local_copy_list = [(model.uuid, ".", MODEL_FOLDER),
                                    (self.inputs.dataset.uuid, self.inputs.dataset.filename, DATA_INPUT)]
        calcinfo.retrieve_list = [STDOUT, STDERR, os.path.join(MODEL_FOLDER, "plots")]
        return calcinfo
