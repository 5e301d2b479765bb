"""WorkChains of mlkkr: restartable jobs, datasets in parallel batches, training followed by evaluation.

Entry points (group ``aiida.workflows``):

* ``mlkkr.engine.base`` — :class:`EngineBaseWorkChain`: one :class:`~mlkkr.aiida.calculations.EngineCalculation`
  under aiida-core's ``BaseRestartWorkChain``: a job that ended without output (exit code 300: its
  process was killed — signal, out of memory, walltime, node failure — or the scheduler reported
  one of those) is submitted again, and so is a job killed through AiiDA (``verdi process kill`` on
  the CalcJob alone; kill the parent work chain to stop everything), up to ``max_iterations`` runs.
* ``mlkkr.train.base`` — :class:`TrainBaseWorkChain`: the same for a
  :class:`~mlkkr.aiida.calculations.TrainCalculation`; a restart resumes from the previous job's
  checkpoint (its remote folder).
* ``mlkkr.dataset`` — :class:`DatasetWorkChain`: N configurations in batches of B, one restartable
  engine job per batch, up to ``max_concurrent`` at once; the batch datasets are collected into a
  Group (each record exactly once: ids are checked) and returned.
* ``mlkkr.train_evaluate`` — :class:`TrainEvaluateWorkChain`: merge the datasets (calcfunction),
  train (restartable job), evaluate the model on the held-out split (job).

Batch b of a dataset of N records with seed S in batches of B is ``mlkkr data <kind> --seed S
--start b·B --n min(B, N − b·B)``: record k is a function of (S, k) only, so the batches together are
exactly the records (ids, values) of ``mlkkr data <kind> --n N --seed S`` whatever B is, a restarted
batch recomputes the same records, and batches never share a record.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, WorkChain, process_handler, while_
from aiida.engine.processes.workchains.workchain import WorkChainSpec

from mlkkr.aiida.calculations import MODEL_FOLDER, EngineCalculation, EvaluateCalculation, TrainCalculation
from mlkkr.aiida.cli_args import engine_command, model_command, to_argv
from mlkkr.aiida.functions import collect_dataset, merge_datasets
from mlkkr.aiida.nodes import DatasetData, ModelData
from mlkkr.errors import InputError

KINDS = ("exchange", "potential")

_RESTARTABLE = ("ERROR_OUTPUT_MISSING", "ERROR_SCHEDULER_OUT_OF_MEMORY", "ERROR_SCHEDULER_OUT_OF_WALLTIME",
                "ERROR_SCHEDULER_NODE_FAILURE")


class _RestartableJob(BaseRestartWorkChain):
    """One CalcJob (``_process_class``) under BaseRestartWorkChain, its inputs exposed in the namespace
    ``calc`` and its outputs returned; at most 3 runs by default, and a child killed through AiiDA is run
    again (aiida-core aborts). Subclasses add the process handler for a job that died."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace="calc")
        spec.expose_outputs(cls._process_class)
        spec.inputs["max_iterations"].default = lambda: orm.Int(3)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )

    def setup(self) -> None:
        """The CalcJob's inputs, re-used by every run (a handler may add to them)."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, "calc"))

    def inspect_process(self):  # type: ignore[no-untyped-def]
        node = self.ctx.children[self.ctx.iteration - 1]
        if node.is_killed:
            self.report(f"{self.ctx.process_name}<{node.pk}> was killed; submitting it again "
                        f"(run {self.ctx.iteration} of at most {self.inputs.max_iterations.value})")
            return None
        return super().inspect_process()  # type: ignore[misc]


class EngineBaseWorkChain(_RestartableJob):
    """An engine job that is submitted again when its process dies without output."""

    _process_class = EngineCalculation

    @process_handler(priority=500, exit_codes=[getattr(EngineCalculation.exit_codes, c) for c in _RESTARTABLE])
    def handle_job_died(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """The job died without output (killed, out of memory or time): run it again unchanged."""
        self.report(f"{node.process_label}<{node.pk}> ended without output ({node.exit_status}: "
                    f"{node.exit_message}); submitting it again")
        return ProcessHandlerReport(do_break=True)


class TrainBaseWorkChain(_RestartableJob):
    """A training job that resumes from its checkpoint when its process dies."""

    _process_class = TrainCalculation

    @process_handler(priority=500, exit_codes=[getattr(TrainCalculation.exit_codes, c) for c in _RESTARTABLE])
    def handle_job_died(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """The training died: run it again, from the dead job's checkpoint when it wrote one."""
        remote = node.outputs.remote_folder if "remote_folder" in node.outputs else None
        try:  # a short transport call, on this rare path only
            has_checkpoint = remote is not None and "checkpoint.pt" in remote.listdir(MODEL_FOLDER)
        except OSError:
            has_checkpoint = False
        if has_checkpoint:
            self.ctx.inputs.parent_folder = remote
        self.report(f"{node.process_label}<{node.pk}> ended without output ({node.exit_status}); "
                    + ("resuming from its checkpoint" if has_checkpoint else "starting again (no checkpoint)"))
        return ProcessHandlerReport(do_break=True)


def batch_plan(n: int, batch_size: int) -> list[tuple[str, int, int]]:
    """(name, records, start) of each batch of a dataset of ``n`` records in batches of ``batch_size``:
    batch b holds records ``start = b·batch_size`` … ``start + records − 1`` of the dataset's seed."""
    return [(f"batch_{b:04d}", min(batch_size, n - start), start) for b, start in enumerate(range(0, n, batch_size))]


def validate_dataset_inputs(kind: str, n: int, batch_size: int, seed: int, parameters: dict[str, Any],
                            max_concurrent: int = 0) -> None:
    """Check what a dataset work chain would run; InputError naming the field (before any submission)."""
    if kind not in KINDS:
        raise InputError("kind", kind, allowed=KINDS)
    for field, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("seed", seed, 0),
                              ("max_concurrent", max_concurrent, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(field, value, allowed=f"an integer >= {low}")
    for key in ("n", "seed", "start"):
        if key in parameters:
            raise InputError(f"parameters.{key}", parameters[key], reason=f"set {key} on the work chain, not here")
    to_argv(engine_command(f"data {kind}"), parameters)


def _validate_dataset(inputs: dict[str, Any], _: Any) -> str | None:
    try:
        validate_dataset_inputs(
            inputs["kind"].value if "kind" in inputs else "", inputs["n"].value if "n" in inputs else 0,
            inputs["batch_size"].value, inputs["seed"].value, inputs["parameters"].get_dict(),
            inputs["max_concurrent"].value)
    except InputError as exc:
        return str(exc)
    except KeyError:
        return None
    return None


class DatasetWorkChain(WorkChain):
    """A dataset of ``n`` exchange pairs or impurity embeddings computed in parallel batches."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input("kind", valid_type=orm.Str, serializer=orm.to_aiida_type,
                   help="exchange (pairs, `mlkkr data exchange`) or potential (embeddings, `mlkkr data potential`).")
        spec.input("n", valid_type=orm.Int, serializer=orm.to_aiida_type, help="Number of records.")
        spec.input("batch_size", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(100),
                   help="Records per engine job.")
        spec.input("seed", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0),
                   help="Seed of the dataset: every batch runs with it and its own --start, so the records do "
                        "not depend on the batch size.")
        spec.input("parameters", valid_type=orm.Dict, serializer=orm.to_aiida_type, default=lambda: orm.Dict(),
                   help="Further options of `mlkkr data <kind>` (host, kgrid, cutoff, ...), not n, seed or start.")
        spec.input("code", valid_type=orm.AbstractCode, help="The `mlkkr` executable on the computer.")
        spec.input("options", valid_type=orm.Dict, serializer=orm.to_aiida_type, default=lambda: orm.Dict(),
                   help="metadata.options of every engine job (resources, max_wallclock_seconds, queue_name ...).")
        spec.input("max_iterations", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(3),
                   help="Most runs of one batch (restarts after a killed job).")
        spec.input("max_concurrent", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0),
                   help="Most batches running at once (0: all).")
        spec.input("group_label", valid_type=orm.Str, serializer=orm.to_aiida_type, required=False,
                   help="Group collecting the batch datasets [default: mlkkr/dataset/<kind>/<pk>].")
        spec.inputs.validator = _validate_dataset
        spec.outline(
            cls.setup,
            while_(cls.batches_left)(cls.launch_batches, cls.inspect_batches),
            cls.collect,
        )
        spec.output_namespace("batches", valid_type=DatasetData, dynamic=True,
                              help="The dataset of each batch (also the Group's members).")
        spec.output("summary", valid_type=orm.Dict, help="Records, batches, group, duplicate check.")
        spec.exit_code(410, "ERROR_BATCH_FAILED", message="Batch {batch} failed: {reason}")
        spec.exit_code(411, "ERROR_DUPLICATE_RECORDS", message="{count} record ids occur more than once: {ids}")
        spec.exit_code(412, "ERROR_MISSING_RECORDS", message="Expected {expected} records, collected {found}.")

    def setup(self) -> None:
        """Plan the batches."""
        self.ctx.plan = batch_plan(self.inputs.n.value, self.inputs.batch_size.value)
        self.ctx.plan_starts = True  # plan entries are (name, records, start), not a checkpoint's (…, seed)
        self.ctx.launched = 0
        self.ctx.wave = []
        self.report(f"{self.inputs.n.value} {self.inputs.kind.value} records in {len(self.ctx.plan)} batches")

    def batches_left(self) -> bool:
        return self.ctx.launched < len(self.ctx.plan)

    def launch_batches(self) -> None:
        """Submit the next ``max_concurrent`` batches (all, by default)."""
        width = self.inputs.max_concurrent.value or len(self.ctx.plan)
        wave = self.ctx.plan[self.ctx.launched:self.ctx.launched + width]
        params = self.inputs.parameters.get_dict()
        options = self.inputs.options.get_dict()
        seed = self.inputs.seed.value
        command = orm.Str(f"data {self.inputs.kind.value}")  # one node, input of every batch
        for name, n_b, third in wave:
            if self.ctx.get("plan_starts", False):
                batch = {"n": n_b, "seed": seed, "start": third}
            else:  # planned by an older mlkkr (a checkpoint resumed after an upgrade): third is the batch's seed
                batch = {"n": n_b, "seed": third}
            inputs = {
                "calc": {
                    "code": self.inputs.code,
                    "command": command,
                    "parameters": orm.Dict({**params, **batch}),
                    "metadata": {"options": options, "label": name},
                },
                "max_iterations": self.inputs.max_iterations,
                "metadata": {"label": name, "call_link_label": name},
            }
            self.to_context(**{name: self.submit(EngineBaseWorkChain, **inputs)})
        self.ctx.launched += len(wave)
        self.ctx.wave = [name for name, _, _ in wave]

    def inspect_batches(self) -> Any:
        """Stop if a batch failed for good (its restarts are used up)."""
        for name in self.ctx.wave:
            node = self.ctx[name]
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_BATCH_FAILED.format(
                    batch=name, reason=f"{node.process_label}<{node.pk}> {node.process_state.value} "
                                       f"(exit status {node.exit_status}: {node.exit_message})")
        return None

    def collect(self) -> Any:
        """Check every record is there once, add the batch datasets to the group, return them."""
        datasets = {name: self.ctx[name].outputs.dataset for name, _, _ in self.ctx.plan}
        label = self.inputs.group_label.value if "group_label" in self.inputs else \
            f"mlkkr/dataset/{self.inputs.kind.value}/{self.node.pk}"
        summary = collect_dataset(group=orm.Str(label), **datasets, metadata={"call_link_label": "collect"})
        if summary["n_duplicates"]:
            return self.exit_codes.ERROR_DUPLICATE_RECORDS.format(count=summary["n_duplicates"],
                                                                  ids=summary["duplicates"])
        if summary["n_records"] != self.inputs.n.value:
            return self.exit_codes.ERROR_MISSING_RECORDS.format(expected=self.inputs.n.value,
                                                                found=summary["n_records"])
        group, _ = orm.Group.collection.get_or_create(label)
        new = {d.uuid for d in datasets.values()}
        ours = {i for d in datasets.values() for i in d.record_ids}
        clash: set[str] = set()
        for node in group.nodes:
            if isinstance(node, DatasetData) and node.uuid not in new:
                clash |= ours.intersection(node.record_ids)
        if clash:
            return self.exit_codes.ERROR_DUPLICATE_RECORDS.format(
                count=len(clash), ids=f"already in group {label!r}: {sorted(clash)[:5]}")
        group.add_nodes(list(datasets.values()))  # idempotent: a replayed step adds nothing twice
        self.node.base.extras.set("group", label)
        self.out("batches", datasets)
        self.out("summary", summary)
        self.report(f"{summary['n_records']} records in group {label!r}")
        return None


def _validate_train(inputs: dict[str, Any], _: Any) -> str | None:
    datasets = inputs.get("datasets", {})
    if not datasets:
        return "datasets: give at least one dataset"
    kinds = {d.kind for d in datasets.values()}
    if len(kinds) != 1:
        return f"datasets: all of one kind, got {sorted(kinds)}"
    kind = kinds.pop()
    try:
        to_argv(model_command(kind, "train_cmd"), inputs["train_parameters"].get_dict(), "train_parameters")
        to_argv(model_command(kind, "evaluate_cmd"), inputs["evaluate_parameters"].get_dict(), "evaluate_parameters")
    except InputError as exc:
        return str(exc)
    return None


class TrainEvaluateWorkChain(WorkChain):
    """Train a model on datasets (merged into one), then evaluate it on the held-out test split."""

    @classmethod
    def define(cls, spec: WorkChainSpec) -> None:  # type: ignore[override]
        super().define(spec)
        spec.input_namespace("datasets", valid_type=DatasetData, dynamic=True,
                             help="Training data: one or more datasets of one kind (e.g. a dataset Group's members).")
        spec.input("code", valid_type=orm.AbstractCode, help="The `mlkkr` executable on the (e.g. GPU) computer.")
        spec.input("train_parameters", valid_type=orm.Dict, serializer=orm.to_aiida_type,
                   default=lambda: orm.Dict(), help="Options of `mlkkr train <kind>` (epochs, seed, device ...).")
        spec.input("evaluate_parameters", valid_type=orm.Dict, serializer=orm.to_aiida_type,
                   default=lambda: orm.Dict(), help="Options of `mlkkr evaluate` (split, no_plots ...).")
        spec.input("options", valid_type=orm.Dict, serializer=orm.to_aiida_type, default=lambda: orm.Dict(),
                   help="metadata.options of both jobs.")
        spec.input("max_iterations", valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(3),
                   help="Most runs of the training (resumed after a killed job).")
        spec.inputs.validator = _validate_train
        spec.outline(cls.prepare_data, cls.train, cls.inspect_training, cls.evaluate, cls.finalize)
        spec.output("dataset", valid_type=DatasetData, help="The training data (merged datasets).")
        spec.output("model", valid_type=ModelData)
        spec.output("training_metrics", valid_type=orm.Dict)
        spec.output("evaluation", valid_type=orm.Dict)
        spec.exit_code(420, "ERROR_TRAINING_FAILED", message="Training failed: {reason}")
        spec.exit_code(421, "ERROR_EVALUATION_FAILED", message="Evaluation failed: {reason}")

    def prepare_data(self) -> None:
        """The training file: the one dataset, or the datasets merged (calcfunction, in name order)."""
        datasets = dict(self.inputs.datasets)
        if len(datasets) == 1:
            self.ctx.dataset = next(iter(datasets.values()))
        else:
            self.ctx.dataset = merge_datasets(**datasets, metadata={"call_link_label": "merge"})

    def train(self) -> Any:
        inputs = {
            "calc": {"code": self.inputs.code, "dataset": self.ctx.dataset,
                     "parameters": self.inputs.train_parameters,
                     "metadata": {"options": self.inputs.options.get_dict(), "label": "train"}},
            "max_iterations": self.inputs.max_iterations,
            "metadata": {"call_link_label": "train"},
        }
        return self.to_context(training=self.submit(TrainBaseWorkChain, **inputs))

    def inspect_training(self) -> Any:
        node = self.ctx.training
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                reason=f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}")
        return None

    def evaluate(self) -> Any:
        inputs = {"code": self.inputs.code, "model": self.ctx.training.outputs.model, "dataset": self.ctx.dataset,
                  "parameters": self.inputs.evaluate_parameters,
                  "metadata": {"options": self.inputs.options.get_dict(), "label": "evaluate",
                               "call_link_label": "evaluate"}}
        return self.to_context(evaluation=self.submit(EvaluateCalculation, **inputs))

    def finalize(self) -> Any:
        node = self.ctx.evaluation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_EVALUATION_FAILED.format(
                reason=f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}")
        self.out("dataset", self.ctx.dataset)
        self.out("model", self.ctx.training.outputs.model)
        self.out("training_metrics", self.ctx.training.outputs.metrics)
        self.out("evaluation", node.outputs.metrics)
        return None
