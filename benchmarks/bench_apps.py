"""App tile → first interactive widget, against opening a minimal Voila notebook. Median of N (default 5).

Through a real hub (``mlkkr hub``) and Chromium, one logged-in user:

* reference: open a notebook with one cell that shows one ipywidgets Button (the least a Voila page
  with a widget costs: a kernel, the page, the widget manager) until the button is on screen;
* each app: on the home launcher, click the app's tile, until the app's first interactive widget (an
  enabled control inside ``.mlkkr-app``) is on screen; also until the app has fully loaded its AiiDA
  side (``.mlkkr-loaded``).

Runs are interleaved (reference, app, reference, app …) so that a busy machine slows both alike.
Prints the medians and the ratio app/reference (goal ≤ 2). Nothing is asserted.

    .venv/bin/python benchmarks/bench_apps.py [--repeat 5] [--apps kkr-launcher,ml-training,data-archive]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _hubs import CHROMIUM_FLAGS, PASSWORD, free_port
from playwright.sync_api import sync_playwright

from mlkkr.hub.client import HubClient, HubProcess

BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("MLKKR_CHROMIUM", "/usr/bin/chromium")
MINIMAL = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                      "source": ["import ipywidgets as w\n", "w.Button(description='ready')"]}],
           "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
FIRST_WIDGET = ".mlkkr-app select:enabled, .mlkkr-app input:enabled, .mlkkr-app button:enabled"


def kill_under(folder: Path) -> None:
    """Stop what the hub left of this run (daemons, kernels) by their data folder, as the tests do."""
    import psutil

    marker = str(folder)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = proc.info["environ"] or {}
            if marker in " ".join(proc.info["cmdline"] or []) or marker in env.get("AIIDA_PATH", ""):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--apps", default="kkr-launcher,ml-training,data-archive")
    args = parser.parse_args()
    apps = [a for a in args.apps.split(",") if a]

    with tempfile.TemporaryDirectory(prefix="mlkkr-bench-apps-") as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        hub = HubProcess([str(BIN / "mlkkr"), "hub", "--data-dir", str(data), "--port", str(port), "--admin", "bench"],
                         url, Path(tmp) / "hub.log")
        try:
            client = HubClient(url, "bench", PASSWORD)
            client.signup()
            home = data / "users" / "bench"
            (home / "bench").mkdir(parents=True, exist_ok=True)
            (home / "bench" / "minimal.ipynb").write_text(json.dumps(MINIMAL))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(600_000)
                page.goto(f"{url}/hub/login")
                page.fill("#username_input", "bench")
                page.fill("#password_input", PASSWORD)
                page.click("#login_submit")
                page.wait_for_selector(".jp-LauncherCard")
                base = f"{url}/user/bench/voila/render"
                # warm-up: the first kernel start and the first AiiDA import fill the OS caches
                page.goto(f"{base}/bench/minimal.ipynb")
                page.wait_for_selector("button:has-text('ready')")
                page.goto(f"{base}/apps/home/home.ipynb")
                page.wait_for_selector(".mlkkr-tile")
                page.locator(f".mlkkr-tile-link[data-app='{apps[0]}']").click()
                page.wait_for_selector(".mlkkr-loaded")

                ref: list[float] = []
                first: dict[str, list[float]] = {a: [] for a in apps}
                full: dict[str, list[float]] = {a: [] for a in apps}
                for rep in range(args.repeat):
                    for app in apps:
                        page.goto("about:blank")
                        start = time.perf_counter()
                        page.goto(f"{base}/bench/minimal.ipynb")
                        page.wait_for_selector("button:has-text('ready')")
                        ref.append(time.perf_counter() - start)

                        page.goto(f"{base}/apps/home/home.ipynb")
                        tile = page.locator(f".mlkkr-tile-link[data-app='{app}']")
                        tile.wait_for()
                        start = time.perf_counter()
                        tile.click()
                        page.wait_for_selector(FIRST_WIDGET)
                        first[app].append(time.perf_counter() - start)
                        page.wait_for_selector(".mlkkr-loaded, .mlkkr-progress-failed")
                        full[app].append(time.perf_counter() - start)
                        print(f"run {rep + 1}: minimal {ref[-1]:.2f} s; {app}: first widget {first[app][-1]:.2f} s, "
                              f"loaded {full[app][-1]:.2f} s", flush=True)
                browser.close()
        finally:
            hub.stop()
            kill_under(data)

    r = statistics.median(ref)
    print(f"\nmedian of {args.repeat} (seconds), minimal Voila notebook with one widget: {r:.2f}")
    print(f"{'app':<14} {'first widget':>13} {'ratio':>7} {'fully loaded':>13} {'ratio':>7}")
    for app in apps:
        f, lo = statistics.median(first[app]), statistics.median(full[app])
        print(f"{app:<14} {f:>13.2f} {f / r:>7.2f} {lo:>13.2f} {lo / r:>7.2f}")
    print("goal: tile → first interactive widget ≤ 2 × the minimal notebook")


if __name__ == "__main__":
    main()
