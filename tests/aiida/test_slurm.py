"""The engine jobs through a real single-node Slurm (Debian's slurm-wlm, scripts/install-slurm.sh) with
AiiDA's ``core.slurm`` scheduler over the ``core.local`` transport."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from aiida import orm
from aiida.engine import submit

from mlkkr.aiida.calculations import EngineCalculation
from mlkkr.aiida.launch import dataset_builder
from mlkkr.aiida.testing import wait_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def slurm_computer(services, tmp_path_factory):
    """A computer ``slurm-local``: this host's Slurm (partition ``debug``)."""
    if not shutil.which("sbatch"):
        pytest.fail("Slurm is not installed: run scripts/install-slurm.sh as root")
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in state.stdout.split()):
        pytest.fail(f"Slurm is not up ({state.stdout.strip()} {state.stderr.strip()}): run scripts/install-slurm.sh")
    computer = orm.Computer(label="slurm-local", hostname="localhost", transport_type="core.local",
                            scheduler_type="core.slurm",
                            workdir=str(tmp_path_factory.mktemp("slurm-scratch"))).store()
    computer.set_minimum_job_poll_interval(1)
    computer.set_default_mpiprocs_per_machine(1)
    computer.configure(safe_interval=0)
    return computer


def test_dataset_jobs_run_through_slurm(services, slurm_computer):
    builder = dataset_builder("exchange", 10, 5, slurm_computer, seed=2,
                              parameters={"kgrid": 8, "cutoff": 1.0, "env_radius": 1.0},
                              options={"max_wallclock_seconds": 600, "queue_name": "debug"}, group="tests/slurm")
    wc = wait_for(submit(builder), 600)
    assert wc.is_finished_ok, f"{wc.process_state} {wc.exit_status} {wc.exit_message}\n{services.daemon_log()[-4000:]}"
    jobs = [j for r in wc.called if isinstance(r, orm.WorkflowNode) for j in r.called]
    assert len(jobs) == 2 and all(j.process_class is EngineCalculation and j.is_finished_ok for j in jobs)
    for job in jobs:
        assert job.computer.scheduler_type == "core.slurm" and job.get_job_id().isdigit()
        shown = subprocess.run(["scontrol", "show", "job", job.get_job_id()], capture_output=True, text=True,
                               timeout=30)
        assert "JobState=COMPLETED" in shown.stdout and "Partition=debug" in shown.stdout, shown.stdout
    assert wc.outputs.summary["n_records"] == 10


def test_a_real_jukkr_job_runs_through_slurm(services, slurm_computer):
    """voronoi (the first job of every host SCF) for fcc Cu, submitted by AiiDA to Slurm with the platform's
    JuKKR build and the prepend text the profile's codes carry (stack, threads, ElementDataBase)."""
    from mlkkr.aiida import kkr
    from mlkkr.aiida.jukkr_codes import wanted
    from mlkkr.aiida.kkr_launch import structure_from
    from support import jukkr_installation

    spec = next(s for s in wanted(jukkr_installation()) if s.label == "voronoi")
    code = orm.InstalledCode(computer=slurm_computer, filepath_executable=spec.executable, label="voronoi",
                             default_calc_job_plugin=spec.plugin, prepend_text=spec.prepend_text,
                             with_mpi=False).store()
    kkrhost = orm.InstalledCode(computer=slurm_computer, filepath_executable="/bin/true", label="kkrhost-unused",
                                default_calc_job_plugin=kkr.KKRHOST, with_mpi=False).store()
    scf = kkr.host_scf_builder(structure_from("fcc-Cu"), code, kkrhost,
                               options=kkr.options_dict(max_wallclock_seconds=600, queue_name="debug"))
    job = wait_for(submit(kkr.voronoi_builder(scf)), 600)
    assert job.is_finished_ok, f"{job.process_state} {job.exit_status} {job.exit_message}\n" \
                               f"{services.daemon_log()[-4000:]}"
    assert job.computer.scheduler_type == "core.slurm" and job.get_job_id().isdigit()
    shown = subprocess.run(["scontrol", "show", "job", job.get_job_id()], capture_output=True, text=True, timeout=30)
    assert "JobState=COMPLETED" in shown.stdout and "Partition=debug" in shown.stdout, shown.stdout
    out = job.outputs.output_parameters.get_dict()
    assert out["radial_meshpoints"] and out["alat"] > 0
    stdout = job.outputs.retrieved.base.repository.get_object_content("out_voronoi")
    assert "Using database ....: ElementDataBase/Cu29.pot" in stdout, "the prepend text linked voronoi's database"
    assert {"output.pot", "shapefun"} <= set(job.outputs.retrieved.base.repository.list_object_names())
