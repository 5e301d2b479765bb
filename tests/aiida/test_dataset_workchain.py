"""Dataset work chains on a real daemon (PostgreSQL + RabbitMQ): parallel batches, a Group with every
pair once, a daemon stopped and started mid-way, killed jobs restarted by the restart logic."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import psutil
import pytest
from aiida import orm
from aiida.engine import submit

from mlkkr.aiida.calculations import EngineCalculation
from mlkkr.aiida.launch import dataset_builder
from mlkkr.aiida.nodes import DatasetData
from mlkkr.aiida.testing import wait_for
from mlkkr.aiida.workflows import EngineBaseWorkChain

pytestmark = pytest.mark.services

#: the engine's cheapest settings (k-grid 8, pairs within one lattice constant)
CHEAP = {"kgrid": 8, "cutoff": 1.0, "env_radius": 1.0}


def _descendants(node: orm.ProcessNode, cls: type) -> list[orm.ProcessNode]:
    """Every process called by ``node``, recursively (CALL links), of type ``cls``."""
    out, todo = [], list(node.called)
    while todo:
        child = todo.pop()
        todo += child.called
        if isinstance(child, cls):
            out.append(child)
    return sorted(out, key=lambda n: n.pk)


def _engine_jobs(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    return [n for n in _descendants(node, orm.CalcJobNode) if n.process_class is EngineCalculation]


def _group_ids(label: str) -> list[str]:
    group = orm.load_group(label)
    return [i for n in group.nodes if isinstance(n, DatasetData) for i in n.record_ids]


def _assert_finished(node: orm.ProcessNode, services) -> None:
    assert node.is_finished_ok, (f"{node.process_label}<{node.pk}> {node.process_state} {node.exit_status} "
                                 f"{node.exit_message}\n{services.daemon_log()[-5000:]}")


def test_fifty_pairs_in_five_jobs_with_the_daemon_stopped_midway(services, tmp_path, greens_cache_dir):
    """≥ 50 pairs in ≥ 5 parallel CalcJobs; the daemon is stopped while they run and started again."""
    builder = dataset_builder("exchange", 50, 10, services.computer, seed=11, parameters=CHEAP,
                              group="tests/fifty")
    wc = submit(builder)
    deadline = time.monotonic() + 240
    while not _engine_jobs(wc) and time.monotonic() < deadline and not wc.is_terminated:
        time.sleep(0.2)
    assert _engine_jobs(wc), f"no engine job started\n{services.daemon_log()[-3000:]}"
    services.stop_daemon()
    assert not wc.is_terminated, "the work chain ended before the daemon was stopped: nothing was interrupted"
    running_at_stop = len([j for j in _engine_jobs(wc) if not j.is_terminated])
    time.sleep(2)
    services.start_daemon()
    wait_for(wc, 300)
    _assert_finished(wc, services)

    jobs = _engine_jobs(wc)
    assert len(jobs) >= 5 and running_at_stop >= 1
    assert all(j.is_finished_ok for j in jobs), "no job failed, so no batch ran twice"
    assert len(jobs) == 5, f"one job per batch, nothing duplicated: {[(j.pk, j.label) for j in jobs]}"
    ids = _group_ids("tests/fifty")
    assert len(ids) == 50 and len(set(ids)) == 50, Counter(ids).most_common(3)
    group = orm.load_group("tests/fifty")
    assert {n.uuid for n in group.nodes} == {d.uuid for d in wc.outputs.batches.values()}
    summary = wc.outputs.summary.get_dict()
    assert summary["n_records"] == 50 and summary["n_unique"] == 50 and summary["n_batches"] == 5
    assert summary["group"] == "tests/fifty"
    # every record is the batch's (seed, sample) record: the first batch reproduces in one process
    first = wc.outputs.batches["batch_0000"]
    assert first.record_ids == [f"exchange:{first.record_ids[0].split(':')[1]}:{i}" for i in range(10)]
    # the batches together are `mlkkr data exchange --n 50 --seed 11` run at once: same ids, same tensors
    _assert_union_is_one_run(wc, 50, 11, CHEAP, tmp_path)
    # the jobs shared the host tables through the cache: at most one computed them
    statuses = [j.outputs.summary["host_tables"]["cache"] for j in jobs]
    assert set(statuses) <= {"hit", "miss"} and statuses.count("miss") <= 1, statuses
    assert list(greens_cache_dir.glob("g0-*.bin"))


def _assert_union_is_one_run(wc: orm.WorkflowNode, n: int, seed: int, params: dict, tmp_path) -> None:
    from click.testing import CliRunner

    from mlkkr.aiida.nodes import read_summary
    from mlkkr.cli import main
    from mlkkr.data import read_exchange

    args = ["data", "exchange", "--n", str(n), "--seed", str(seed), "--no-progress", "-o", str(tmp_path / "all.h5")]
    for key, value in sorted(params.items()):
        args += [f"--{key.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    direct = read_exchange(tmp_path / "all.h5")
    batches = [wc.outputs.batches[k] for k in sorted(wc.outputs.batches)]
    assert [i for b in batches for i in b.record_ids] == read_summary(tmp_path / "all.h5")["record_ids"]
    tensors = np.concatenate([np.array([r.tensor for r in b.records()]) for b in batches])
    assert tensors.tobytes() == np.array([r.tensor for r in direct]).tobytes()  # bit for bit


def _job_of(wc: orm.WorkflowNode, batch: str, timeout: float = 240) -> orm.CalcJobNode:
    """The first engine CalcJob of a batch, once its remote work directory exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in wc.called:
            if child.label == batch and child.called:
                job = child.called[0]
                if job.get_remote_workdir():
                    return job
        time.sleep(0.1)
    raise AssertionError(f"{batch}: no job started")


def _mlkkr_process(workdir: str, timeout: float = 120) -> psutil.Process:
    """The ``mlkkr`` process a job runs in ``workdir``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            try:
                cmd = proc.info["cmdline"] or []
                if proc.info["cwd"] == workdir and any(c.endswith("mlkkr") for c in cmd) and "exchange" in cmd:
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no mlkkr process in {workdir}")


def test_killed_jobs_are_restarted(services):
    """Batch 0: its mlkkr process is killed (SIGKILL); batch 1: its CalcJob is killed through AiiDA.
    The restart logic (BaseRestartWorkChain) runs both again and the dataset is complete."""
    from aiida.engine.processes.control import kill_processes

    builder = dataset_builder("exchange", 20, 10, services.computer, seed=5, parameters=CHEAP,
                              options={"prepend_text": "sleep 3"}, group="tests/killed")
    wc = submit(builder)
    job0 = _job_of(wc, "batch_0000")
    job1 = _job_of(wc, "batch_0001")
    kill_processes([job1], msg_text="killed by the test", timeout=60)
    _mlkkr_process(job0.get_remote_workdir()).kill()
    wait_for(wc, 600)
    _assert_finished(wc, services)

    runs = {c.label: c for c in wc.called if isinstance(c, orm.WorkflowNode)}
    first0, *rest0 = sorted(runs["batch_0000"].called, key=lambda n: n.pk)
    assert first0.exit_status == EngineCalculation.exit_codes.ERROR_OUTPUT_MISSING.status, first0.exit_message
    assert [c.is_finished_ok for c in rest0] == [True]
    first1, *rest1 = sorted(runs["batch_0001"].called, key=lambda n: n.pk)
    assert first1.is_killed
    assert [c.is_finished_ok for c in rest1] == [True]
    assert all(r.process_class is EngineBaseWorkChain for r in runs.values())
    ids = _group_ids("tests/killed")
    assert len(ids) == 20 and len(set(ids)) == 20
