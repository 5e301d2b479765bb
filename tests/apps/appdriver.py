"""Drive the Voila-rendered apps in a Playwright page: open, wait until loaded, fill ipywidgets forms.

ipywidgets 8 render as plain HTML controls: a Dropdown is a ``<select>``, an IntText an
``<input type=number>``, a Button a ``<button>``; the apps add ``mlkkr-*`` CSS classes to what the tests
look for (see :mod:`mlkkr.apps.widgets`).
"""

from __future__ import annotations

from playwright.sync_api import Locator, Page

MINUTE = 60_000

#: made in the user's profile for the ML and archive tests: a small exchange dataset from the engine
DATASET_GROUP = "demo/exchange-pairs"
MAKE_DATASET = """
import subprocess, sys, tempfile
from pathlib import Path
from aiida import load_profile, orm
load_profile()
from mlkkr.aiida.nodes import DatasetData
with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "pairs.h5"
    subprocess.run([str(Path(sys.executable).with_name("mlkkr")), "data", "exchange", "--n", "{n}", "--seed", "3",
                    "--kgrid", "16", "--no-progress", "-o", str(out)], check=True)
    node = DatasetData(out).store()
group, _ = orm.Group.collection.get_or_create("{group}")
group.add_nodes([node])
print("DATASET", node.pk, node.n_records)
"""




def voila_url(hub_url: str, user: str, path: str) -> str:
    return f"{hub_url}/user/{user}/voila/render/{path}"


def wait_app(page: Page, timeout: float = 6 * MINUTE) -> None:
    """Wait until the app's AiiDA side has loaded (the ``mlkkr-loaded`` class), failing on a load error."""
    page.wait_for_selector(".mlkkr-app", timeout=timeout)
    page.wait_for_selector(".mlkkr-loaded, .mlkkr-loading.mlkkr-progress-failed", timeout=timeout)
    failed = page.locator(".mlkkr-loading.mlkkr-progress-failed")
    assert failed.count() == 0, failed.first.inner_text()


def field(page: Page, name: str) -> Locator:
    """The field widget registered under ``name`` (CSS class ``mlkkr-field-<name>``)."""
    css = "".join(c if c.isalnum() else "-" for c in name)
    while "--" in css:
        css = css.replace("--", "-")
    return page.locator(f".mlkkr-field-{css.strip('-')}").first


def field_error(page: Page, name: str) -> str:
    return field(page, name).locator(".mlkkr-field-error").first.inner_text()


def select(locator: Locator, label: str) -> None:
    """Choose the option whose label contains ``label`` in the <select> inside ``locator``."""
    sel = locator.locator("select").first
    options = sel.locator("option").all_inner_texts()
    match = [o for o in options if label in o.replace("\xa0", " ")]
    assert match, f"no option containing {label!r} in {options}"
    sel.select_option(label=match[0])


def fill_number(locator: Locator, value: int | float) -> None:
    box = locator.locator("input").first
    box.fill(str(value))
    box.press("Enter")


def fill_text(locator: Locator, value: str) -> None:
    box = locator.locator("input, textarea").first
    box.fill(value)
    box.press("Tab")


def click_button(scope: Page | Locator, text: str) -> None:
    scope.locator("button", has_text=text).first.click()
