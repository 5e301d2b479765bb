"""Helpers of the notebook tests: throw-away AiiDA profiles, parameter injection, execution, summaries.

A module of its own (``conftest`` is ambiguous between test folders) so that it can also be run by
hand: ``python tests/notebooks/nbrun.py notebooks/03-ml-es.ipynb`` executes one notebook against a
fresh profile and prints its summary and run time.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
BIN = Path(sys.executable).parent
#: The reference JuKKR archives: $MLKKR_KKR_REFERENCE, else ../shared/kkr-reference next to the repository.
KKR_REFERENCE = Path(os.environ.get("MLKKR_KKR_REFERENCE", ROOT.parent / "shared" / "kkr-reference"))
#: In CI a missing prerequisite fails a test instead of skipping it.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: Generous per-cell limit: the notebooks take 1-3 minutes on 2 busy cores; a hung cell must still end.
CELL_TIMEOUT = 900


def notebook_path(number: int) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{number:02d}-*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one notebooks/{number:02d}-*.ipynb, found {[p.name for p in found]}")
    return found[0]


def base_env(aiida_path: Path) -> dict[str, str]:
    """This environment without any hub, archive or profile settings, pointed at ``aiida_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "MLKKR_", "AIIDA_"))}
    env.update(AIIDA_PATH=str(aiida_path), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    return env


@dataclass
class Profile:
    """A throw-away AiiDA profile made by ``mlkkr setup`` (SQLite + ZeroMQ broker) in its own AIIDA_PATH."""

    aiida_path: Path
    name: str = "notebooks"
    env: dict[str, str] = field(default_factory=dict)
    daemon: bool = False

    @classmethod
    def create(cls, aiida_path: Path, name: str = "notebooks") -> Profile:
        aiida_path.mkdir(parents=True, exist_ok=True)
        env = base_env(aiida_path)
        env.update(MLKKR_PROFILE=name, MLKKR_BROKER="zeromq", MLKKR_STORAGE="sqlite")
        run([str(BIN / "mlkkr"), "setup", "--json"], env)
        return cls(aiida_path, name, env)

    def start_daemon(self, workers: int = 1) -> None:
        run([str(BIN / "verdi"), "-p", self.name, "daemon", "start", str(workers)], self.env)
        self.daemon = True

    def stop_daemon(self) -> None:
        if self.daemon:
            subprocess.run([str(BIN / "verdi"), "-p", self.name, "daemon", "stop"], env=self.env,
                           capture_output=True, text=True, timeout=120)
            self.daemon = False


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def parameters_cell(nb: nbformat.NotebookNode) -> int:
    """Index of the cell tagged ``parameters`` (every worked notebook has exactly one)."""
    found = [k for k, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(found)}")
    return found[0]


def parameter_names(nb: nbformat.NotebookNode) -> set[str]:
    tree = ast.parse(nb.cells[parameters_cell(nb)].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def inject(nb: nbformat.NotebookNode, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """Insert a cell tagged ``injected-parameters`` after the ``parameters`` cell (papermill's convention)."""
    if not parameters:
        return nb
    unknown = set(parameters) - parameter_names(nb)
    if unknown:
        raise KeyError(f"not parameters of this notebook: {sorted(unknown)}")
    source = "# Parameters injected by the test\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    cell["id"] = "injected-parameters"
    nb.cells.insert(parameters_cell(nb) + 1, cell)
    return nb


@dataclass
class Executed:
    nb: nbformat.NotebookNode
    seconds: float

    def final_outputs(self) -> list[dict[str, Any]]:
        code = [c for c in self.nb.cells if c.cell_type == "code"]
        return code[-1].outputs

    def summary(self) -> Any:
        """The value the final cell displays (its ``text/plain`` repr, read back as a Python literal)."""
        for out in self.final_outputs():
            if out.get("output_type") == "execute_result" and "text/plain" in out.get("data", {}):
                return ast.literal_eval(out["data"]["text/plain"])
        raise AssertionError(f"the final cell displays no value: {self.final_outputs()}")

    def text(self) -> str:
        """Everything the notebook printed or displayed as text (for failure messages)."""
        parts = []
        for c in self.nb.cells:
            for out in c.get("outputs", []):
                if out.get("output_type") == "stream":
                    parts.append(out.get("text", ""))
                elif "data" in out and "text/plain" in out["data"]:
                    parts.append(out["data"]["text/plain"])
        return "\n".join(parts)


def execute(path: Path, env: dict[str, str], cwd: Path, parameters: dict[str, Any] | None = None,
            save_to: Path | None = None) -> Executed:
    """Run the notebook top to bottom in a fresh kernel with environment ``env`` and working folder ``cwd``."""
    from nbclient import NotebookClient

    nb = inject(nbformat.read(path, as_version=4), dict(parameters or {}))
    cwd.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    t0 = time.perf_counter()
    try:
        client.execute(env=env, cwd=str(cwd))
    finally:
        if save_to is not None:
            nbformat.write(nb, save_to)
    return Executed(nb, time.perf_counter() - t0)


def main(argv: list[str]) -> int:
    """Execute a notebook by hand against a fresh profile: nbrun.py [--save=DIR] NOTEBOOK [NAME=VALUE ...]."""
    import tempfile

    save = None
    if argv and argv[0].startswith("--save="):
        save = Path(argv.pop(0).split("=", 1)[1]).resolve()
    path = Path(argv[0]).resolve()
    params = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in argv[1:])}
    if path.name.startswith("04-") and "reference_dir" not in params:
        params["reference_dir"] = str(KKR_REFERENCE)
    with tempfile.TemporaryDirectory(prefix="mlkkr-nb-") as tmp:
        profile = Profile.create(Path(tmp) / "aiida")
        if path.name.startswith(("01-", "02-")):
            profile.start_daemon()
        try:
            t0 = time.perf_counter()
            done = execute(path, profile.env, Path(tmp) / "work", params, save_to=(save or Path(tmp)) / path.name)
        finally:
            profile.stop_daemon()
        print(json.dumps(done.summary(), indent=1, default=str))
        print(f"{path.name}: executed in {done.seconds:.1f} s (with profile set-up {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
