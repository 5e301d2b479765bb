"""Drive JupyterLab 4 in a Playwright page: log in, open a notebook, run cells, read outputs."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def login(page: Page, url: str, username: str, password: str, next_path: str = "") -> None:
    page.goto(f"{url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")


def signup(page: Page, url: str, username: str, password: str) -> str:
    page.goto(f"{url}/hub/signup")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.click("#signup_submit")
    page.wait_for_load_state()
    return page.inner_text("body")


def wait_for_lab(page: Page, timeout: float = 180_000) -> None:
    """Wait until JupyterLab's launcher is shown (the user's server has spawned and Lab loaded)."""
    page.wait_for_selector(".jp-LauncherCard", timeout=timeout)


def new_notebook(page: Page) -> None:
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content")
    # Cells typed before the kernel is connected are not queued: wait for "| Idle" in the status bar.
    page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')", timeout=90_000)


def run_cell(page: Page, code: str, expect: str, timeout: float = 120_000) -> str:
    """Type ``code`` into the active cell, run it, wait for an output containing ``expect``."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    index = cells.count() - 1
    cells.nth(index).locator(".cm-content").click()
    page.keyboard.insert_text(code)  # as a paste: no auto-indent or auto-closing brackets
    page.keyboard.press("Shift+Enter")
    output = cells.nth(index).locator(".jp-OutputArea")
    output.locator(f".jp-OutputArea-output:has-text('{expect}')").wait_for(timeout=timeout)
    return output.inner_text()
