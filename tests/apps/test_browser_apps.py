"""The apps through the real hub, in Chromium: home launcher, KKR launcher (an invalid form submits
nothing; a built-in-engine run finishes through the daemon and shows its tensors; real JuKKR: a host SCF
of fcc Cu, then Fe embedded in it), ML training (parity plot and error table; a real impurity series
Mn…Ni in that Cu host, fitted element by element), and the data archive (alice publishes, bob sees and
imports).

The tests of this module share one hub and the users' sessions, and run in file order. Screenshots go to
docs/screenshots/<app>-*.png (the README shows them). Every wait is generous: on a busy 2-core machine a
user's server, a Voila kernel and the AiiDA daemon compete for the CPU.
"""

from __future__ import annotations

import json

import pytest
from appdriver import (
    DATASET_GROUP,
    MAKE_DATASET,
    MINUTE,
    click_button,
    field,
    field_error,
    fill_number,
    fill_text,
    select,
    voila_url,
    wait_app,
)

from labdriver import shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT_PROCESSES = """
from aiida import load_profile, orm
load_profile()
print("COUNT", orm.QueryBuilder().append(orm.ProcessNode).count())
"""

STATE = {}
#: the outcome of an action (submit, train, publish, import): not the app's own loading bar
ENDED = ".mlkkr-progress-done:not(.mlkkr-loading), .mlkkr-progress-failed:not(.mlkkr-loading)"
FAILED = ".mlkkr-progress-failed:not(.mlkkr-loading)"


@pytest.fixture(scope="module")
def aiida_run():
    """Run Python code against a user's AiiDA profile (tests/support.py's helper, with more time)."""
    from support import aiida_run as run

    return lambda home, code: run(home, code, timeout=600)


REPORT = """
from aiida import load_profile, orm
load_profile()
from aiida.cmdline.utils.common import get_workchain_report
node = orm.load_node({pk})
print(get_workchain_report(node, "REPORT"))
for child in node.called_descendants:
    if child.is_excepted or child.is_failed:
        print(child.process_label, child.pk, child.exit_status, child.exit_message, child.exception)
"""


def why_failed(aiida_run, home, status: str) -> str:
    """The report of the process named in a failed status line (``Label<pk> …``), for the assertion."""
    import re

    match = re.search(r"<(\d+)>", status)
    if not match:
        return status
    try:
        return status + "\n" + aiida_run(home, REPORT.format(pk=match.group(1)))
    except AssertionError as exc:
        return f"{status}\n(no report: {exc})"


def process_count(aiida_run, home) -> int:
    out = aiida_run(home, COUNT_PROCESSES)
    return int(out.split("COUNT")[1].split()[0])


@pytest.fixture(scope="module")
def alice(apps_hub, browser_session):
    page = browser_session(apps_hub, "alice")
    STATE["alice_client"] = apps_hub.client("alice")
    assert STATE["alice_client"].login()
    return page


def test_launcher_cards_home_tiles_and_the_kkr_launcher(apps_hub, alice):
    page = alice
    # JupyterLab's launcher has a card per app (jupyter-app-launcher), and ~/apps holds the app folders.
    page.wait_for_selector(".jp-LauncherCard[title*='KKR launcher'], .jp-LauncherCard:has-text('KKR launcher')")
    for title in ("mlkkr apps", "KKR launcher", "ML training", "Data archive"):
        assert page.locator(".jp-LauncherCard", has_text=title).count() >= 1, title
    shot(page, "home-jupyterlab-launcher")
    assert (apps_hub.home("alice") / "apps" / "kkr-launcher" / "metadata.json").is_file()

    # The home launcher: a tile per app; the KKR tile opens the KKR launcher.
    page.goto(voila_url(apps_hub.url, "alice", "apps/home/home.ipynb"))
    page.wait_for_selector(".mlkkr-tile-link[data-app='kkr-launcher']", timeout=5 * MINUTE)
    assert page.locator(".mlkkr-tile").count() == 3
    shot(page, "home-tiles")
    page.locator(".mlkkr-tile-link[data-app='kkr-launcher']").click()
    wait_app(page)
    assert "/voila/render/apps/kkr-launcher/kkr.ipynb" in page.url


def test_kkr_invalid_form_shows_errors_and_submits_nothing(apps_hub, aiida_run, alice):
    page = alice
    before = process_count(aiida_run, apps_hub.home("alice"))
    # No structure yet.
    click_button(page, "Submit")
    page.wait_for_selector(".mlkkr-field-structure .mlkkr-field-error:has-text('choose a structure')",
                           timeout=5 * MINUTE)
    assert "choose a structure" in field_error(page, "structure")
    # A structure, but impurity 1 on a site the structure does not have.
    select(field(page, "structure"), "TI model host")
    page.wait_for_selector(".mlkkr-structure-viewer .mlkkr-help", timeout=2 * MINUTE)
    fill_number(page.locator(".mlkkr-impurity-site").nth(1), 99)
    click_button(page, "Submit")
    page.wait_for_selector(".mlkkr-field-impurities-1 .mlkkr-field-error:has-text('no site 99')", timeout=2 * MINUTE)
    message = field_error(page, "impurities[1]")
    assert "no site 99" in message and "27 sites" in message, message
    assert field_error(page, "structure").strip() == ""
    page.locator(".mlkkr-field-impurities-1").scroll_into_view_if_needed()
    shot(page, "kkr-launcher-invalid-form")
    assert process_count(aiida_run, apps_hub.home("alice")) == before  # nothing was submitted


def test_kkr_engine_run_finishes_through_the_daemon(apps_hub, aiida_run, alice):
    page = alice
    fill_number(page.locator(".mlkkr-impurity-site").nth(1), 1)
    fill_number(field(page, "kgrid"), 12)
    fill_number(field(page, "contour_points"), 12)
    page.locator(".mlkkr-field-code select").first.wait_for()
    click_button(page, "Submit")
    page.wait_for_selector(f".mlkkr-progress-running:not(.mlkkr-loading), {ENDED}", timeout=5 * MINUTE)
    page.wait_for_selector(ENDED, timeout=15 * MINUTE)
    status = page.locator(ENDED).first.inner_text()
    assert page.locator(FAILED).count() == 0, why_failed(aiida_run, apps_hub.home("alice"), status)
    page.wait_for_selector(".mlkkr-tensor-table", timeout=5 * MINUTE)
    page.wait_for_selector(".mlkkr-exchange-plot .js-plotly-plot, .mlkkr-exchange-plot svg", timeout=5 * MINUTE)
    table = page.locator(".mlkkr-tensor-table").inner_text()
    assert "pair 0–1 (Mn-Fe)" in table and "J_ij (meV)" in table
    page.locator(".mlkkr-results").scroll_into_view_if_needed()
    shot(page, "kkr-launcher-results")
    page.screenshot(path=str(shot(page, "kkr-launcher-full")), full_page=True)
    # In alice's profile: an EngineBaseWorkChain that finished, its CalcJob run by the daemon's runner.
    info = json.loads(aiida_run(apps_hub.home("alice"), """
import json
from aiida import load_profile, orm
load_profile()
node = max(orm.load_group("mlkkr/kkr-launcher").nodes, key=lambda n: n.pk)
calc = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)][0]
print(json.dumps({"label": node.process_label, "ok": node.is_finished_ok, "calc": calc.process_label,
                  "job_id": calc.get_job_id(), "pairs": len(node.outputs.summary["pairs"])}))
""").strip().splitlines()[-1])
    assert info["label"] == "EngineBaseWorkChain" and info["ok"] and info["calc"] == "EngineCalculation"
    assert info["job_id"] and info["pairs"] == 1
    daemon_log = apps_hub.home("alice") / ".aiida" / "daemon" / "log" / "aiida-alice.log"
    assert daemon_log.is_file(), "the daemon of alice's profile has no log: did it run?"


JUKKR_RESULT = """
import json
from aiida import load_profile, orm
load_profile()
from mlkkr.aiida.kkr_results import converged_hosts, summary
nodes = sorted(orm.load_group("mlkkr/kkr-launcher").nodes, key=lambda n: n.pk)
imp = [n for n in nodes if n.process_label == "kkr_imp_wc"][-1]
s = summary(imp)
kkrimp = [c for c in imp.called_descendants if c.process_label == "KkrimpCalculation"]
print(json.dumps({"ok": imp.is_finished_ok, "converged": s["converged"], "moment": s["total_spin_moment"],
                  "hosts": [h["formula"] for h in converged_hosts()], "code": kkrimp[0].inputs.code.full_label,
                  "host_ef": converged_hosts()[0]["fermi_energy_ry"]}))
"""


def wait_outcome(page, aiida_run, home, label: str, timeout: float) -> None:
    """Wait until the status line says the work chain ``label`` ended (the results are then shown)."""
    ended = ", ".join(f"{e}:has-text('{label}')" for e in ENDED.split(", "))
    try:
        page.wait_for_selector(ended, timeout=timeout)
    except Exception:
        page.screenshot(path=str(home.parent.parent.parent / f"timeout-{label}.png"), full_page=True)
        raise AssertionError(f"no outcome of {label}: status {page.locator('.mlkkr-status').all_inner_texts()}; "
                             f"monitor log {page.locator('.mlkkr-monitor-log').all_inner_texts()}") from None
    status = page.locator(ended).first.inner_text()
    assert page.locator(FAILED).count() == 0, why_failed(aiida_run, home, status) + \
        "\n" + "\n".join(page.locator(".mlkkr-monitor-log").all_inner_texts())


def test_kkr_launcher_runs_real_jukkr_host_then_impurity(apps_hub, aiida_run, alice):
    """fcc Cu: the host SCF with kkr_scf_wc (voronoi, KKRhost), then Fe embedded in it with kkr_imp_wc (KKRimp),
    both through alice's daemon on the JuKKR codes her profile got at spawn."""
    page = alice
    home = apps_hub.home("alice")
    select(field(page, "structure"), "fcc Cu")
    page.wait_for_selector(".mlkkr-structure-viewer .mlkkr-help:has-text('Cu')", timeout=2 * MINUTE)
    click_button(page, "JuKKR (aiida-kkr)")
    page.wait_for_selector(".mlkkr-jukkr-task", timeout=2 * MINUTE)
    click_button(page, "Submit")
    wait_outcome(page, aiida_run, home, "kkr_scf_wc", 15 * MINUTE)
    page.wait_for_selector(".mlkkr-kkr-summary", timeout=5 * MINUTE)
    try:
        page.wait_for_selector(".mlkkr-convergence-plot .js-plotly-plot, .mlkkr-convergence-plot svg",
                               timeout=5 * MINUTE)
    except Exception:
        page.screenshot(path=str(home.parent.parent.parent / "no-convergence-plot.png"), full_page=True)
        raise AssertionError(page.locator(".mlkkr-results").inner_html()[:3000]) from None
    summary = page.locator(".mlkkr-kkr-summary").inner_text()
    assert "E_F (Ry)" in summary and "0.6437" in summary, summary
    page.locator(".mlkkr-results").scroll_into_view_if_needed()
    shot(page, "kkr-launcher-jukkr-host")

    # the converged host is offered; embed Fe in it (the impurity alone: cluster radius 2.5 Å)
    click_button(page, "embed an impurity")
    page.wait_for_selector(".mlkkr-host-calc select option:has-text('Cu — E_F 0.6437')", state="attached",
                           timeout=2 * MINUTE)
    select(page.locator(".mlkkr-impurity-element").first, "Fe")
    fill_number(page.locator(".mlkkr-impurity-site").first, 0)
    click_button(page, "Submit")
    wait_outcome(page, aiida_run, home, "kkr_imp_wc", 10 * MINUTE)
    page.wait_for_selector(".mlkkr-delta-v-plot .js-plotly-plot, .mlkkr-delta-v-plot svg", timeout=5 * MINUTE)
    summary = page.locator(".mlkkr-kkr-summary").inner_text()
    assert "spin moment (μB)" in summary and "2.3" in summary, summary
    page.locator(".mlkkr-delta-v-plot").scroll_into_view_if_needed()
    shot(page, "kkr-launcher-jukkr-impurity")
    info = json.loads(aiida_run(home, JUKKR_RESULT).strip().splitlines()[-1])
    assert info["ok"] and info["converged"] and info["moment"] == pytest.approx(2.34, abs=0.05)
    assert info["hosts"] == ["Cu"] and info["host_ef"] == pytest.approx(0.64375, abs=5e-5)
    assert info["code"] == "kkrimp@localhost", "the code registered at spawn ran KKRimp"


def test_ml_training_shows_parity_plot_and_error_table(apps_hub, aiida_run, alice):
    page = alice
    out = aiida_run(apps_hub.home("alice"), MAKE_DATASET.format(n=40, group=DATASET_GROUP))
    assert "DATASET" in out
    page.goto(voila_url(apps_hub.url, "alice", "apps/home/home.ipynb"))
    page.locator(".mlkkr-tile-link[data-app='ml-training']").click()
    wait_app(page)
    select(field(page, "group"), DATASET_GROUP)
    for name, value in (("epochs", 4), ("mul", 4), ("layers", 1), ("latent", 8), ("batch_size", 16)):
        fill_number(field(page, f"hyper.{name}"), value)
    shot(page, "ml-training-form")
    click_button(page, "Train")
    page.wait_for_selector(".mlkkr-loss-plot", timeout=5 * MINUTE)
    page.wait_for_selector(ENDED, timeout=20 * MINUTE)
    status = page.locator(ENDED).first.inner_text()
    assert page.locator(FAILED).count() == 0, why_failed(aiida_run, apps_hub.home("alice"), status)
    page.wait_for_selector(".mlkkr-error-table", timeout=5 * MINUTE)
    page.wait_for_selector(".mlkkr-parity-plot .js-plotly-plot, .mlkkr-parity-plot svg", timeout=5 * MINUTE)
    table = page.locator(".mlkkr-error-table").inner_text()
    assert "e3nn" in table and "MAE (meV)" in table
    page.locator(".mlkkr-results").scroll_into_view_if_needed()
    shot(page, "ml-training-results")
    # Predict a new pair with the stored model.
    click_button(page, "Predict")
    prediction = page.locator(".mlkkr-prediction:has-text('J_ij')")
    prediction.or_(page.locator(".mlkkr-field-predict .mlkkr-field-error:visible")).first.wait_for(timeout=5 * MINUTE)
    errors = page.locator(".mlkkr-field-predict .mlkkr-field-error")
    assert not errors.is_visible(), errors.inner_text()
    page.locator(".mlkkr-prediction").scroll_into_view_if_needed()
    shot(page, "ml-training-predict")


SERIES_DONE = ".mlkkr-series-progress.mlkkr-progress-done, .mlkkr-series-progress.mlkkr-progress-failed"


def test_ml_app_runs_a_real_impurity_series_and_fits_it(apps_hub, aiida_run, alice):
    """Real data in the ML app: Mn, Fe, Co, Ni embedded one by one (kkr_imp_wc, KKRimp through alice's daemon) in
    the fcc Cu host the KKR launcher converged above, collected as one ΔV(r) dataset, then the radial ML-ES
    model fitted leaving each element out in turn, with the held-out prediction plotted against KKRimp."""
    page = alice
    home = apps_hub.home("alice")
    before = process_count(aiida_run, home)
    series = page.locator(".mlkkr-series-run")
    series.scroll_into_view_if_needed()
    click_button(field(page, "series.host"), "Refresh")
    page.wait_for_selector(".mlkkr-series-host select option:has-text('Cu — E_F 0.6437')", state="attached",
                           timeout=2 * MINUTE)
    select(field(page, "series.host"), "Cu — E_F 0.6437")
    fill_text(field(page, "series.elements"), "Fe,Xx")
    series.click()
    page.wait_for_selector(".mlkkr-field-series-elements .mlkkr-field-error:has-text('Xx')", timeout=MINUTE)
    assert process_count(aiida_run, home) == before, "a bad element submits nothing"
    fill_text(field(page, "series.elements"), "Mn,Fe,Co,Ni")
    fill_number(field(page, "series.max_concurrent"), 2)
    series.click()
    page.wait_for_selector(".mlkkr-series-progress:has-text('embeddings done')", timeout=5 * MINUTE)
    page.wait_for_selector(SERIES_DONE, timeout=20 * MINUTE)
    status = page.locator(".mlkkr-series-progress").inner_text()
    assert page.locator(".mlkkr-series-progress.mlkkr-progress-failed").count() == 0, \
        why_failed(aiida_run, home, status)
    assert "4 of 4 embeddings done" in status, status
    page.wait_for_selector(".mlkkr-series-plot .js-plotly-plot, .mlkkr-series-plot svg", timeout=5 * MINUTE)
    table = page.locator(".mlkkr-series-table").inner_text()
    for el in ("Mn", "Fe", "Co", "Ni"):
        assert el in table, table
    page.locator(".mlkkr-series-results").scroll_into_view_if_needed()
    shot(page, "ml-training-jukkr-series")
    info = json.loads(aiida_run(home, SERIES_RESULT).strip().splitlines()[-1])
    assert info["ok"] and info["elements"] == ["Mn", "Fe", "Co", "Ni"] and info["kind"] == "potential-radial"
    assert info["kkrimp_runs"] == 4 and all(info["converged"]), info


SERIES_RESULT = """
import json
from aiida import load_profile, orm
load_profile()
node = orm.QueryBuilder().append(orm.WorkChainNode, filters={"attributes.process_label": "KkrImpuritySeriesWorkChain"}
                                 ).order_by({orm.WorkChainNode: {"ctime": "desc"}}).first(flat=True)
ds = node.outputs.dataset
recs = ds.records()
runs = [c for c in node.called if c.process_label == "kkr_imp_wc"]
print(json.dumps({"ok": node.is_finished_ok, "elements": [r.impurity for r in recs], "kind": ds.kind,
                  "kkrimp_runs": len(runs), "converged": [bool(r.converged) for r in recs]}))
"""


def test_publish_then_a_second_user_imports(apps_hub, aiida_run, alice, browser_session):
    page = alice
    page.goto(voila_url(apps_hub.url, "alice", "apps/data-archive/archive.ipynb"))
    wait_app(page)
    select(field(page, "group"), DATASET_GROUP)
    # The form explains a missing title next to the field and publishes nothing.
    fill_text(field(page, "authors"), "Alice Example")
    click_button(page, "Publish")
    page.wait_for_selector(".mlkkr-field-title .mlkkr-field-error:has-text('required')", timeout=5 * MINUTE)
    assert "title is required" in field_error(page, "title")
    fill_text(field(page, "title"), "Exchange pairs of co-doped TI model clusters")
    fill_text(field(page, "keywords"), "exchange, DMI, topological insulator")
    click_button(page, "Publish")
    page.wait_for_selector(ENDED, timeout=10 * MINUTE)
    status = page.locator(ENDED).first.inner_text()
    assert "Published demo-exchange-pairs v1" in status, status
    page.wait_for_selector(".mlkkr-catalog:has-text('demo-exchange-pairs')", timeout=2 * MINUTE)
    shot(page, "data-archive-publish")

    # bob signs up, alice (the admin) approves, bob sees the item and imports it into his profile.
    bob = browser_session(apps_hub, "bob", approve_by=STATE["alice_client"])
    bob.goto(voila_url(apps_hub.url, "bob", "apps/data-archive/archive.ipynb"))
    wait_app(bob)
    bob.wait_for_selector(".mlkkr-catalog:has-text('demo-exchange-pairs')", timeout=2 * MINUTE)
    assert "Alice Example" in bob.locator(".mlkkr-catalog").inner_text()
    select(field(bob, "item"), "demo-exchange-pairs v1")
    bob.wait_for_selector(".mlkkr-details:has-text('Exchange pairs')", timeout=2 * MINUTE)
    click_button(bob, "Import into my profile")
    bob.wait_for_selector(ENDED, timeout=10 * MINUTE)
    assert bob.locator(FAILED).count() == 0, bob.locator(FAILED).first.inner_text()
    assert "Imported" in bob.locator(ENDED).first.inner_text()
    shot(bob, "data-archive-import")
    out = aiida_run(apps_hub.home("bob"), """
from aiida import load_profile, orm
load_profile()
from mlkkr.aiida.nodes import DatasetData
print("BOB", orm.QueryBuilder().append(DatasetData).count(), orm.load_group("demo/exchange-pairs").count())
""")
    assert "BOB 1 1" in out, out
