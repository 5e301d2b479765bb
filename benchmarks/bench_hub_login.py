"""Login → JupyterLab launcher visible, and the first `load_profile()`: mlkkr against a plain
JupyterHub + JupyterLab (same spawner, same authenticator, no mlkkr). Median of N (default 5),
printed as ratios mlkkr/plain. Goal: ratio ≤ 1.3. Nothing is asserted.

    .venv/bin/python benchmarks/bench_hub_login.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from _hubs import CHROMIUM_FLAGS, PASSWORD, BenchHub
from playwright.sync_api import sync_playwright

CELL = ("import time; t0 = time.perf_counter()\nfrom aiida import load_profile\nprofile = load_profile()\n"
        "print('LOADED', profile.name, round(time.perf_counter() - t0, 4))")


def one_login(browser, hub: BenchHub, name: str) -> tuple[float, float, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(180_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", PASSWORD)
    start = time.perf_counter()
    page.click("#login_submit")
    page.wait_for_selector(".jp-LauncherCard")
    t_lab = time.perf_counter() - start
    page.locator(".jp-LauncherCard[data-category='Notebook']").first.click()
    page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')")
    page.locator(".jp-Notebook .jp-CodeCell .cm-content").first.click()
    page.keyboard.insert_text(CELL)
    start = time.perf_counter()
    page.keyboard.press("Shift+Enter")
    out = page.locator(".jp-OutputArea-output:has-text('LOADED')").first
    out.wait_for()
    t_cell = time.perf_counter() - start
    t_kernel = float(re.search(r"LOADED \S+ ([0-9.]+)", out.inner_text()).group(1))
    context.close()
    hub.admin.stop_server(name)
    hub.admin.wait_stopped(name)
    return t_lab, t_cell, t_kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {"plain": [], "mlkkr": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        hubs = {kind: BenchHub(kind, Path(tmp) / kind) for kind in results}
        try:
            for i in range(args.repeat):
                for kind, hub in hubs.items():  # interleaved, so drift hits both alike
                    name = f"user{i}"
                    hub.add_user(name)
                    results[kind].append(one_login(browser, hub, name))
                    print(f"  {kind:5s} #{i}: login→launcher {results[kind][-1][0]:.2f} s, first load_profile "
                          f"cell {results[kind][-1][1]:.2f} s (in kernel {results[kind][-1][2]:.3f} s)", flush=True)
        finally:
            for hub in hubs.values():
                hub.stop()
            browser.close()
    med = {kind: [statistics.median(r[k] for r in rows) for k in range(3)] for kind, rows in results.items()}
    print(f"\nmedian of {args.repeat}            plain (reference)   mlkkr    ratio mlkkr/plain")
    for k, label in enumerate(["login → launcher [s]", "first load_profile cell [s]", "load_profile in kernel [s]"]):
        print(f"{label:28s} {med['plain'][k]:10.3f} {med['mlkkr'][k]:10.3f} {med['mlkkr'][k] / med['plain'][k]:10.2f}")
    total_plain, total_mlkkr = med["plain"][0] + med["plain"][1], med["mlkkr"][0] + med["mlkkr"][1]
    print(f"{'login → profile loaded [s]':28s} {total_plain:10.3f} {total_mlkkr:10.3f} "
          f"{total_mlkkr / total_plain:10.2f}   (goal ≤ 1.3)")


if __name__ == "__main__":
    main()
