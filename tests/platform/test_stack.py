"""The Python stack: every dependency the package declares is installed at an allowed version and
imports; `pip check` is clean; the old masci-tools works with numpy 2; torch is the pinned one."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
DEPENDENCIES = [Requirement(r) for r in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
#: distribution name -> module to import, where they differ
MODULES = {"scikit-learn": "sklearn", "pyyaml": "yaml", "aiida-core": "aiida", "aiida-kkr": "aiida_kkr",
           "masci-tools": "masci_tools", "aiidalab-widgets-base": "aiidalab_widgets_base",
           "jupyterhub-nativeauthenticator": "nativeauthenticator", "jupyterhub-idle-culler": "jupyterhub_idle_culler",
           "tb2j": "TB2J", "rocrate": "rocrate", "psycopg": "psycopg"}


@pytest.mark.parametrize("req", DEPENDENCIES, ids=lambda r: r.name)
def test_declared_dependency_installed_and_importable(req):
    version = md.version(req.name)
    assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} not in {req.specifier}"
    importlib.import_module(MODULES.get(req.name, req.name.replace("-", "_")))


def test_pins_that_matter():
    assert md.version("torch") == "2.13.0"
    assert md.version("jupyterhub").startswith("5.5."), "nativeauthenticator 1.3.0 fails on JupyterHub 6"
    assert md.version("aiidalab-widgets-base").startswith("3."), "2.x means ipywidgets 7: no JupyterLab 4"
    assert md.version("ipywidgets").startswith("8.")
    assert sys.version_info[:2] == (3, 12)


def test_pip_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_masci_tools_works_with_numpy_2(tmp_path):
    """masci-tools 0.15 predates numpy 2: write and read back a KKR inputcard, rotate a spin."""
    from masci_tools.io.common_functions import angles_to_vec, get_alat_from_bravais, vec_to_angles
    from masci_tools.io.kkr_params import kkrparams

    assert np.__version__.startswith("2.")
    bravais = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]) * 6.82
    assert get_alat_from_bravais(bravais) == pytest.approx(6.82 * np.sqrt(0.5))
    params = kkrparams(ALATBASIS=6.82, BRAVAIS=bravais, NAEZ=1, RBASIS=np.zeros((1, 3)), ZATOM=[29.0],
                       NSPIN=1, LMAX=2, NATYP=1, RMAX=7.0, GMAX=65.0, RCLUSTZ=1.5, NSTEPS=1, IMIX=0,
                       STRMIX=0.01, QBOUND=1e-3, INS=0, KSHAPE=0, INTERFACE=False, NPT1=3, NPT2=10,
                       NPT3=3, NPOL=5, EMIN=-0.6, TEMPR=800.0, BZDIVIDE=[10, 10, 10])
    params.fill_keywords_to_inputfile(output=str(tmp_path / "inputcard"))
    text = (tmp_path / "inputcard").read_text()
    assert "ALATBASIS" in text and "BZDIVIDE" in text
    back = kkrparams(params_type="kkr")
    back.read_keywords_from_inputcard(inputcard=str(tmp_path / "inputcard"))
    assert back.get_value("ALATBASIS") == pytest.approx(6.82)
    assert np.allclose(np.array(back.get_value("BRAVAIS"), float), bravais)
    vec = np.array([[0.3, -0.4, 0.866]])
    mag, theta, phi = vec_to_angles(vec)
    assert np.allclose(angles_to_vec(mag, theta, phi), vec)
