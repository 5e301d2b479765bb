"""The apps' widgets without a browser or Voila: built in-process on a throw-away profile; forms put
errors next to their fields and submit nothing; a valid KKR form runs and shows its results."""

from __future__ import annotations

import json

import pytest
from ase import Atoms
from ase.build import bulk

from mlkkr.apps.registry import discover, install_apps, launcher_yaml, read_app, source_dir


def sc(a: float = 4.38, n: int = 3) -> Atoms:
    return Atoms("Bi", positions=[[0, 0, 0]], cell=[a, a, a], pbc=True).repeat((n, n, n))


def process_count() -> int:
    from aiida import orm

    return orm.QueryBuilder().append(orm.ProcessNode).count()


def test_every_app_folder_is_complete():
    apps = discover(source_dir())
    assert [a.name for a in apps] == ["home", "kkr-launcher", "ml-training", "data-archive"]
    for app in apps:
        assert (app.folder / app.logo).is_file() and app.start_md.strip()
        nb = json.loads((app.folder / app.notebook).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{app.name}: outputs not stripped"
        assert "from mlkkr.apps" in "".join(code[0]["source"]), f"{app.name}: not a thin notebook"


def test_install_apps_copies_writes_launcher_cards_and_keeps_user_edits(tmp_path):
    apps = install_apps(tmp_path, base_url="/user/alice/")
    assert {a.name for a in apps} == {"home", "kkr-launcher", "ml-training", "data-archive"}
    assert (tmp_path / "apps/kkr-launcher/kkr.ipynb").is_file()
    cards = (tmp_path / ".local/share/jupyter/jupyter_app_launcher/jp_app_launcher_mlkkr.yaml").read_text()
    assert "source: /user/alice/voila/render/apps/kkr-launcher/kkr.ipynb" in cards and "type: url" in cards
    assert "extension_denylist" in (tmp_path / ".jupyter/voila.json").read_text()
    # a user's edit survives a restart while the version is the same
    start = tmp_path / "apps/kkr-launcher/start.md"
    start.write_text("my notes")
    install_apps(tmp_path, base_url="/user/alice/")
    assert start.read_text() == "my notes"
    # a broken source never stops a server
    assert install_apps(tmp_path / "other", source=tmp_path / "nowhere") == []


def test_launcher_yaml_skips_apps_without_a_card():
    apps = [read_app(source_dir() / "home")]
    assert "mlkkr apps" in launcher_yaml(apps, "/")


def test_home_launcher_has_a_tile_per_app(tmp_path):
    from mlkkr.apps.home import HomeLauncher

    install_apps(tmp_path, base_url="/")
    home = HomeLauncher(tmp_path)
    text = home.children[-1].value
    apps = (("kkr-launcher", "kkr.ipynb"), ("ml-training", "ml.ipynb"), ("data-archive", "archive.ipynb"))
    for name, notebook in apps:
        assert f'href="../{name}/{notebook}"' in text
    assert 'data-app="home"' not in text


def test_field_error_routing():
    import ipywidgets as ipw

    from mlkkr.apps.widgets import Field, Form
    from mlkkr.errors import InputError

    form = Form([Field("impurities", ipw.VBox()), Field("impurities[1]", ipw.HBox()), Field("code", ipw.HTML())])
    used = form.show(InputError("impurities[1].site", 99, reason="no site 99", allowed="0 … 26"))
    assert used.name == "impurities[1]" and "no site 99" in used.message
    used = form.show(InputError("impurities", [], reason="add one"))
    assert used.name == "impurities" and used.message == "add one"
    assert form.show(InputError("elsewhere", 1)) is None and "elsewhere" in form.errors()[""]
    form.clear()
    assert form.errors() == {}


def test_kkr_form_errors_next_to_fields_and_nothing_submitted(aiida_profile_clean, aiida_localhost):
    from mlkkr.apps.kkr_view import KkrLauncherApp

    app = KkrLauncherApp(background=False)
    assert app.loaded.is_set() and app.load_error is None
    before = process_count()
    assert app.submit() is None  # no structure
    assert "choose a structure" in app.form.fields["structure"].message
    app.structure_manager.structure = sc()
    app.rows[1].site.value = 99
    assert app.submit() is None
    assert "no site 99" in app.form.fields["impurities[1]"].message
    assert app.form.fields["structure"].message == ""
    assert app.progress.state == "failed"
    assert process_count() == before


def test_kkr_form_runs_the_engine_and_shows_results(aiida_profile_clean, aiida_localhost):
    """Without a daemon (the test profile has no broker) the job runs in this process."""
    from mlkkr.apps.kkr_view import KkrLauncherApp

    app = KkrLauncherApp(background=False)
    app.structure_manager.structure = sc()
    app.kgrid.value = 12
    app.contour.value = 12
    node = app.submit()
    assert node is not None and node.is_finished_ok, app.form.errors()
    app.show_results(node)
    html = app.results.children[1].value
    assert "mlkkr-tensor-table" in html and "Mn-Fe" in html
    from aiida import orm

    assert node.pk in [n.pk for n in orm.load_group("mlkkr/kkr-launcher").nodes]


@pytest.mark.parametrize("kind", ["exchange", "potential"])
def test_ml_hyper_parameters_are_checked(kind, aiida_profile_clean):
    from mlkkr.apps import ml
    from mlkkr.errors import InputError

    assert ml.check_hyper(kind, {}) == {h.name: h.default for h in ml.HYPERS[kind]}
    first = ml.HYPERS[kind][0]
    with pytest.raises(InputError) as err:
        ml.check_hyper(kind, {first.name: -5})
    assert err.value.field == f"hyper.{first.name}"


def make_dataset(n: int = 30, group: str = "demo/pairs"):
    """An exchange dataset of ``n`` engine records stored in ``group`` (in this process)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from aiida import orm

    from mlkkr.aiida.nodes import DatasetData

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pairs.h5"
        subprocess.run([str(Path(sys.executable).with_name("mlkkr")), "data", "exchange", "--n", str(n), "--seed", "1",
                        "--kgrid", "16", "--no-progress", "-o", str(out)], check=True)
        node = DatasetData(out).store()
    g, _ = orm.Group.collection.get_or_create(group)
    g.add_nodes([node])
    return node


def test_ml_form_errors_next_to_fields(aiida_profile_clean, aiida_localhost, tmp_path):
    from mlkkr.apps.ml_view import MlTrainingApp

    app = MlTrainingApp(background=False)
    before = process_count()
    app.group.value = None
    assert app.train() is None
    assert "choose a dataset" in app.form.fields["group"].message
    make_dataset(12, "demo/small")
    app.refresh_groups()
    assert app.group.value == "demo/small"
    app.hyper["epochs"].value = 0
    assert app.train() is None
    assert "1 … 100000" in app.form.fields["hyper.epochs"].message
    # a group of real KKRimp ΔV(r) data (an impurity series) is listed but not trained here
    import numpy as np
    from aiida import orm

    from mlkkr.aiida.nodes import DatasetData
    from mlkkr.data.h5io import write_radial
    from mlkkr.data.schema import RadialEmbedding

    rec = RadialEmbedding(host="fcc-Cu", species=["Fe"], z=[26], host_species=["Cu"], host_z=[29],
                          positions=[[0, 0, 0]], r=[np.linspace(0, 1.8, 50)], delta_v=[np.linspace(-500, -24, 50)])
    radial = DatasetData(write_radial(tmp_path / "radial.h5", [rec] * 12, {})).store()
    g, _ = orm.Group.collection.get_or_create("demo/radial")
    g.add_nodes([radial])
    app.refresh_groups()
    app.group.value = "demo/radial"
    app.hyper["epochs"].value = 5
    assert app.train() is None
    assert "potential-radial data" in app.form.fields["group"].message
    assert process_count() == before


def test_ml_series_form_errors_next_to_fields(aiida_profile_clean, aiida_localhost):
    """The real-data form (an impurity series with JuKKR): every field checked before anything is stored."""
    from mlkkr.apps.ml_view import MlTrainingApp

    app = MlTrainingApp(background=False)
    before = process_count()
    assert app.series_host.value is None and "no converged host" in app.series_host.options[0][0]
    assert app.run_series() is None
    assert "choose a converged host" in app.series_form.fields["series.host"].message
    app.series_host.options = [("a host that is not there", 987654)]
    app.series_host.value = 987654
    for field, value, says in (("elements", "Fe,Xx", "Xx"), ("elements", " , ", "element symbols"),
                               ("radius", 40.0, "0.5 … 4.0"), ("max_concurrent", 9, "1 … 4"),
                               ("pairs", "FeCo", "two element symbols joined by '-'"),
                               ("pairs", "Fe-Co, Co-Fe", "given twice"), ("pairs", "Fe-Qq", "not an element")):
        app.series_elements.value, app.series_radius.value, app.series_concurrent.value = "3d", 2.5, 1
        app.series_pairs.value = ""
        getattr(app, f"series_{'concurrent' if field == 'max_concurrent' else field}").value = value
        assert app.run_series() is None, field
        message = app.series_form.fields[f"series.{field}"].message
        assert says in message, (field, message, app.series_form.errors())
        assert "Not submitted" in app.series_progress.status.value
    app.series_elements.value, app.series_radius.value, app.series_concurrent.value = "Fe,Co", 2.5, 1
    app.series_pairs.value = "Fe-Co"
    assert app.run_series() is None
    assert "no such node" in app.series_form.fields["series.host"].message
    assert process_count() == before


@pytest.mark.slow
def test_ml_training_runs_and_shows_parity_and_errors(aiida_profile_clean, aiida_localhost):
    """The whole training work chain in this process (no broker in the test profile): ~1-2 min."""
    from mlkkr.apps.ml_view import MlTrainingApp

    make_dataset(30)
    app = MlTrainingApp(background=False)
    assert app.group.value == "demo/pairs"
    for name, value in (("epochs", 3), ("mul", 4), ("layers", 1), ("latent", 8), ("batch_size", 16)):
        app.hyper[name].value = value
    node = app.train()
    assert node is not None and node.is_finished_ok, (app.form.errors(), node and node.exit_message)
    app.show_results(node)
    assert "e3nn" in app.results.children[1].value and "MAE (meV)" in app.results.children[1].value
    from mlkkr.apps import ml

    history = ml.loss_history(ml.training_job(node))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    tensor = app.predict()
    assert tensor is not None and tensor.shape == (3, 3)
    # the monitor's thread runs show_results too: an ORM node kept on the app would belong to that thread's
    # session and fail when the kernel reads it ("not persistent within this Session"), so only UUIDs are kept
    from aiida import orm

    kept = {name for name, value in vars(app).items() if isinstance(value, orm.Node) and name != "node"}
    assert not kept and app.model_uuid == node.outputs.model.uuid


def test_publish_form_is_checked_before_export(aiida_profile_clean):
    from aiida import orm

    from mlkkr.apps.archive import PublishForm, check_publish
    from mlkkr.errors import InputError

    with pytest.raises(InputError) as err:
        check_publish(PublishForm(group=None))
    assert err.value.field == "group"
    orm.Group(label="empty").store()
    with pytest.raises(InputError) as err:
        check_publish(PublishForm(group="empty", title="A title", authors="Alice"))
    assert err.value.field == "group" and "empty" in str(err.value)
    g = orm.Group(label="full").store()
    g.add_nodes([orm.Int(1).store()])
    with pytest.raises(InputError) as err:
        check_publish(PublishForm(group="full", title="", authors="Alice"))
    assert err.value.field == "title"
    with pytest.raises(InputError) as err:
        check_publish(PublishForm(group="full", title="A title", authors=""))
    assert err.value.field == "authors"
    with pytest.raises(InputError) as err:
        check_publish(PublishForm(group="full", title="A title", authors="Alice", licence="WTFPL"))
    assert err.value.field == "licence"
    check_publish(PublishForm(group="full", title="A title", authors="Alice <0000-0002-1825-0097>",
                              keywords="a, b"))


def test_kkr_form_jukkr_steps_route_errors_to_their_fields(aiida_profile_clean, aiida_localhost):
    """The JuKKR part of the form: every element offered, the step's fields shown, each check's error
    under its own field, nothing stored (the real runs are in tests/aiida and the browser test)."""
    from aiida import orm

    from mlkkr.aiida.jukkr_codes import ensure_codes
    from mlkkr.apps.kkr_view import KkrLauncherApp
    from support import jukkr_installation

    ensure_codes(jukkr_installation(), computer_label=aiida_localhost.label)
    app = KkrLauncherApp(background=False)
    app.backend.value = "jukkr"
    assert "Zn" in app.rows[0].element.options and "U" in app.rows[0].element.options
    assert app.host_box.layout.display is None and app.imp_box.layout.display == "none"
    for name, widget in app.jukkr_codes.items():
        label = {"voronoi_code": "voronoi", "kkr_code": "kkrhost", "kkrimp_code": "kkrimp"}[name]
        widget.value = orm.load_code(f"{label}@{aiida_localhost.label}").uuid
    before = process_count()
    app.structure_manager.structure = bulk("Cu", "fcc", a=3.61)
    app.host_widgets["kmesh"].value = 2
    assert app.submit() is None
    assert "from 4 to 60" in app.form.fields["host.kmesh"].message
    app.host_widgets["kmesh"].value = 20
    app.host_widgets["lmax"].value = 9
    assert app.submit() is None and "lmax" in app.form.errors() or "host.lmax" in app.form.errors()
    app.host_widgets["lmax"].value = 2
    app.jukkr_task.value = "impurity"
    assert app.imp_box.layout.display is None and app.host_box.layout.display == "none"
    assert app.submit() is None
    assert "choose a converged host" in app.form.fields["host_calc"].message
    app.jukkr_task.value = "jij"
    assert app.submit() is None and "converged host" in app.form.fields["host_calc"].message
    assert process_count() == before
