"""The worked notebooks (notebooks/*.ipynb): committed without outputs, and 1-5 and 7 executed top to bottom
with nbclient against a throw-away AiiDA profile; each test checks the values the final cell shows.

Notebook 6 submits to an HPC cluster; it is executed here only in its default mode without one
(``use_cluster = False``: computer and codes stored, builders checked by dry runs, the cluster steps
skipped), which keeps its non-cluster cells correct.

Run times are printed (``-s`` shows them); none is asserted.
"""

from __future__ import annotations

import importlib
import json

import nbformat
import pytest
from nbrun import IN_CI, NOTEBOOKS, execute, notebook_path, parameters_cell

EXPECTED = {1: "quickstart", 2: "ml-exc", 3: "ml-es", 4: "jukkr-data", 5: "fair-store", 6: "hpc", 7: "jukkr-run",
            8: "ml-es-real"}


def run_and_report(number: int, env: dict[str, str], tmp_path, **parameters):
    path = notebook_path(number)
    done = execute(path, env, tmp_path / "work", parameters, save_to=tmp_path / path.name)
    summary = done.summary()
    print(f"\n{path.name}: {done.seconds:.1f} s\n{json.dumps(summary, indent=1, default=str)}")
    return summary


# -- form ------------------------------------------------------------------------------------------


def needs(*modules: str) -> None:
    """Skip (outside CI) with the reason when a module a notebook uses is not importable; fail in CI."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            message = f"{name} is not importable ({exc}): the notebook needs it"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)


def test_the_notebooks_exist_with_a_parameters_cell():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [f"{k:02d}-{v}.ipynb" for k, v in EXPECTED.items()]
    for number, slug in EXPECTED.items():
        path = notebook_path(number)
        assert path.name == f"{number:02d}-{slug}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        parameters_cell(nb)
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {number} ")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_are_stripped_of_outputs(path):
    """nbstripout's rule as a test: no outputs, execution counts or widget state in git."""
    nb = nbformat.read(path, as_version=4)
    dirty = [k for k, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state in the metadata"
    for k, c in enumerate(nb.cells):
        extra = set(c.get("metadata", {})) - {"tags", "editable", "slideshow", "jupyter"}
        assert not extra, f"{path.name}: cell {k} carries metadata {sorted(extra)} (e.g. execution timings)"


# -- executed --------------------------------------------------------------------------------------


def test_notebook_1_quickstart(daemon_profile, tmp_path):
    needs("mlkkr.aiida.launch", "mlkkr.aiida.workflows")
    s = run_and_report(1, daemon_profile.env, tmp_path)
    assert s["daemon"] == "up" and s["finished_ok"] is True
    assert s["process"] == "EngineBaseWorkChain" and s["calculations"] == ["EngineCalculation"]
    assert s["pair"] == "Fe-Fe" and s["distance_A"] == pytest.approx(4.38 * 2**0.5, abs=1e-3)
    # the job through AiiDA gives the numbers of a direct call of the engine
    assert s["aiida_vs_direct_meV"] < 1e-9
    # the Se neighbour breaks the symmetry: D has all three components
    assert all(abs(d) > 1e-3 for d in s["D_meV"])
    assert s["cluster_atoms"] == 16


def test_notebook_2_ml_exc(daemon_profile, tmp_path):
    needs("mlkkr.aiida.launch", "mlkkr.aiida.workflows", "mlkkr.aiida.functions")
    s = run_and_report(2, daemon_profile.env, tmp_path)
    assert (s["n_records"], s["n_batches"], s["duplicates"]) == (900, 3, 0)
    assert s["dataset_ok"] and s["training_ok"] and s["model_kind"] == "exchange"
    # the evaluation job scored the stored model on held-out environments: the equivariant model, which
    # sees the environment, beats the distance-only baseline
    assert 0 < s["evaluated_pairs"] < s["n_records"]
    assert s["test_R2_tensor"] > 0.8 and s["test_R2_tensor"] > s["baseline_R2_tensor"]
    assert s["predicted_pairs"] == 3
    # a prediction leads back to its model, the training job, its data and the three engine jobs
    assert s["provenance"] == {"model": 1, "training": 1, "training_data": 1, "engine_calcjobs": 3}


def test_notebook_3_ml_es(profile, tmp_path):
    s = run_and_report(3, profile.env, tmp_path)
    assert s["n_embeddings"] == 40 and s["n_points"] > 500
    assert s["best_body_order"] in (2, 3)
    # the expansion converges: the best setting beats the smallest one, and the errors are small
    assert s["best_test_rmse_meV"] < s["two_body_n_max_1_rmse_meV"]
    assert s["best_test_rmse_meV"] < 5.0
    assert s["new_embedding_sites"] > 2 and s["new_embedding_mae_meV"] < 5.0
    assert s["model_files"] == ["model.json", "weights.npz"]


def test_notebook_4_jukkr_data(profile, tmp_path, kkr_reference):
    s = run_and_report(4, profile.env, tmp_path, reference_dir=str(kkr_reference))
    assert s["checksums_ok"] == ["jij.aiida", "kkrimp_full_wc.aiida"]
    assert s["n_pairs"] == 58 and s["tensor_parts"] == ["J"]
    # the shells of bcc Fe (Å: pairs, J meV) as aiida-kkr stored them
    expected = {2.46: (8, 11.971), 2.84: (6, 6.022), 4.016: (12, 0.111), 4.71: (24, -1.121), 4.919: (8, 0.929)}
    assert s["shells"].keys() == expected.keys()
    for r, (n, j) in expected.items():
        assert s["shells"][r][0] == n and s["shells"][r][1] == pytest.approx(j, abs=2e-3)
    assert s["impurity"] == ["Zn"] and s["host"] == ["Cu"] and s["cluster_atoms"] == 13
    # the workflow did not converge, and its 'converged_potential' is the first step's potential
    assert s["kkrimp_converged"] is False and s["kkrimp_rms"] == pytest.approx(0.0283, abs=1e-4)
    assert s["converged_potential_is_step"] == 1 and s["kkrimp_steps"] == 5


def test_notebook_5_fair_store(hub_user_server, tmp_path):
    needs("mlkkr.aiida.nodes")
    hub, env = hub_user_server
    s = run_and_report(5, env, tmp_path)
    assert s["owner"] == "alice" and s["version"] >= 1 and s["licence"] == "CC-BY-4.0"
    assert s["published"] == "co-fe-pairs-in-a-ti-host-model"
    assert s["verified"] is True
    # the round trip: everything deleted locally came back from the store, unchanged
    # (dataset, its parameters, the calcfunction that made it)
    assert s["node_count"] == 3 and s["imported_new_nodes"] == s["node_count"]
    assert s["same_uuid"] and s["same_sha256"] and s["records_identical"]
    assert s["group_restored"] and s["provenance_restored"]
    assert s["n_records"] == 24
    crates = sorted(p.name for p in (hub.data_dir / "store" / "crates").iterdir())
    assert f"{s['published']}-{s['version']}" in crates


def test_notebook_6_hpc_without_a_cluster(profile, tmp_path, kkr_reference):
    needs("mlkkr.aiida.kkr")
    s = run_and_report(6, profile.env, tmp_path, reference_dir=str(kkr_reference))
    assert s["computer"] == "my-cluster (core.ssh, core.slurm)"
    assert s["codes"] == ["kkrhost@my-cluster", "kkrimp@my-cluster", "voronoi@my-cluster"]
    assert s["host_scf_dry_run"] == {"voronoi_ZATOM": 29.0, "NAEZ": 1, "LMAX": 2}
    assert s["impurity_dry_run"] == {"RUNOPT_KKRFLEX": True, "cluster_sites": 13, "impurity_Z": 30.0}
    assert s["submitted"] == []


def test_notebook_7_real_jukkr_host_and_impurity(daemon_profile, tmp_path):
    """Real JuKKR from Python: fcc Cu host SCF, then Fe in it (the numbers of tests/aiida/test_jukkr_runs.py)."""
    needs("mlkkr.aiida.kkr_launch", "mlkkr.aiida.kkr_results")
    from support import jukkr_installation

    jukkr_installation()  # the codes the profile got at `mlkkr setup` point there
    s = run_and_report(7, daemon_profile.env, tmp_path)
    assert s["host_converged"] is True and s["host_reused"] is False
    assert s["fermi_energy_ry"] == pytest.approx(0.64375, abs=5e-5)
    assert s["impurity_converged"] is True and s["impurity_moment_muB"] == pytest.approx(2.34, abs=0.05)
    assert s["cluster_atoms"] == 1 and s["mesh_points"] > 400 and s["kkrimp_code"] == "kkrimp@localhost"
    assert 20 <= s["host_iterations"] <= 120


#: Fe held out of Cr…Ni (single impurities in fcc Cu): 0.0020 measured on this platform (the nearest
#: element's profile scaled by ΔZ: 0.0117); the bound leaves 5× room
HELD_OUT_FE = 0.01


def test_notebook_8_ml_es_on_a_real_impurity_series(daemon_profile, tmp_path):
    """Real host, a real series Cr…Ni through the daemon, the radial model and Fe held out."""
    needs("mlkkr.aiida.kkr_launch", "mlkkr.aiida.kkr_series", "mlkkr.models.potential_radial")
    from support import jukkr_installation

    jukkr_installation()
    s = run_and_report(8, daemon_profile.env, tmp_path)
    assert s["series_ok"] and s["host_reused"] is False
    assert s["n_records"] == 5 and s["impurities"] == ["Cr", "Mn", "Fe", "Co", "Ni"] and s["all_converged"]
    assert s["held_out"] == "Fe"
    assert s["held_out_relative_rmse"] < HELD_OUT_FE and s["held_out_relative_rmse"] < s["baseline_relative_rmse"]
    assert s["speedup_vs_jukkr"] > 1e3
    assert set(s["loeo"]) == {"Cr", "Mn", "Fe", "Co", "Ni"}
