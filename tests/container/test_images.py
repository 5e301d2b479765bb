"""Both images, built with Podman from the debootstrap base; the singleuser image run on its own: its
profile, JupyterLab, the JuKKR codes (registered at start, checked against JuKKR's own regression
cases) and the torch of its variant (CPU: stub CUDA libraries, training and prediction on the CPU)."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time

import pytest

from .containerlib import BASE, ROOT, VARIANT, image_layers, podman, require, wait_http, wait_mlkkr_status

pytestmark = pytest.mark.container


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("dockerfile", ["docker/singleuser/Dockerfile", "docker/hub/Dockerfile"])
def test_hadolint_reports_nothing_above_warnings(dockerfile):
    hadolint = require("hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "error", "--format", "tty", "--no-color",
                             str(ROOT / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " error:" not in result.stdout, result.stdout
    print(result.stdout)


@pytest.mark.slow
def test_both_images_are_built_from_the_debootstrap_base(singleuser_image, hub_image):
    base = image_layers(BASE)
    for image in (singleuser_image, hub_image):
        layers = image_layers(image)
        assert layers[: len(base)] == base, f"{image} is not built on {BASE}"
    os_release = podman("run", "--rm", singleuser_image, "cat", "/etc/os-release").stdout
    assert 'VERSION_CODENAME=bookworm' in os_release
    for image in (singleuser_image, hub_image):
        version = podman("run", "--rm", image, "python", "-c", "import sys; print(sys.version_info[:2])").stdout
        assert version.strip() == "(3, 12)"


@pytest.fixture(scope="module")
def singleuser_container(singleuser_image):
    """One container of the singleuser image, run on its own (no hub), for the tests below."""
    port = free_port()
    token = secrets.token_hex(16)
    name = f"mlkkr-test-su-{secrets.token_hex(3)}"
    started = time.monotonic()
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8888", "-e", f"JUPYTER_TOKEN={token}",
           singleuser_image)
    try:
        seconds = wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=240, container=name)
        print(f"singleuser container ready (JupyterLab answering) {seconds:.1f} s after start")
        yield {"name": name, "port": port, "token": token, "started": started}
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)


def in_container(name: str, code: str, timeout: float = 180) -> dict:
    """Run Python ``code`` in the container as its user; its last output line, parsed as JSON."""
    out = podman("exec", name, "python", "-c", "import json\n" + code, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_singleuser_image_runs_alone_profile_ready_lab_answers_as_uid_1000(singleuser_container):
    name, port, token = singleuser_container["name"], singleuser_container["port"], singleuser_container["token"]
    # JupyterLab 4 answers on its port, and its page is served.
    lab = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/lab?token={token}"], capture_output=True,
                         text=True)
    assert "JupyterLab" in lab.stdout
    # The AiiDA profile is ready: `mlkkr status` exits 0 (as the image's user, uid 1000) once the
    # daemon, started detached after JupyterLab answers, is up.
    status = wait_mlkkr_status(name)
    assert status.returncode == 0, status.stdout + status.stderr
    print(f"profile and daemon healthy (`mlkkr status` exit 0) "
          f"{time.monotonic() - singleuser_container['started']:.1f} s after start")
    assert podman("exec", name, "id", "-u").stdout.strip() == "1000"
    assert podman("exec", name, "whoami").stdout.strip() == "jovyan"
    # Every process of the container (tini, the daemon, JupyterLab) runs as jovyan.
    users = podman("top", name, "user").stdout.split()[1:]
    assert users and set(users) == {"jovyan"}, users
    # mlkkr works as that user: a calcfunction stored in the profile made at start.
    out = podman("exec", name, "python", "-c",
                 "from aiida import load_profile, orm; from aiida.engine import calcfunction\n"
                 "load_profile()\n"
                 "@calcfunction\n"
                 "def add(x, y): return x + y\n"
                 "print('SUM', add(orm.Int(1), orm.Int(2)).value)", timeout=120).stdout
    assert "SUM 3" in out
    # The image's HEALTHCHECK agrees.
    podman("healthcheck", "run", name)


CODES = """
from aiida import load_profile, orm
load_profile()
codes = {}
for label in ('voronoi', 'kkrhost', 'kkrimp'):
    code = orm.load_code(f'{label}@localhost')
    codes[label] = {'plugin': code.default_calc_job_plugin, 'executable': str(code.filepath_executable),
                    'computer': code.computer.label, 'type': type(code).__name__}
print(json.dumps(codes))
"""


@pytest.mark.slow
def test_singleuser_profile_has_the_images_jukkr_codes_which_pass_jukkrs_regression_cases(singleuser_container):
    name = singleuser_container["name"]
    status = wait_mlkkr_status(name)
    assert status.returncode == 0, status.stdout + status.stderr
    # The build in the image: /opt/jukkr (MLKKR_JUKKR_PREFIX), portable (x86-64-v2), on OpenBLAS.
    env = podman("exec", name, "sh", "-c", "echo $MLKKR_JUKKR_PREFIX $MLKKR_JUKKR_TESTS").stdout.split()
    assert env[0] == "/opt/jukkr", env
    info = json.loads(podman("exec", name, "mlkkr", "jukkr", "info", "--json").stdout)
    assert info["installed"] and not info["problems"], info
    assert "-march=x86-64-v2" in info["fortran_flags"] and info["blas"] == "openblas", info
    # The three codes were made in the user's profile at start, pointing into the image's build.
    codes = in_container(name, CODES)
    assert codes == {
        "voronoi": {"plugin": "kkr.voro", "executable": "/opt/jukkr/bin/voronoi.exe", "computer": "localhost",
                    "type": "InstalledCode"},
        "kkrhost": {"plugin": "kkr.kkr", "executable": "/opt/jukkr/bin/kkr.x", "computer": "localhost",
                    "type": "InstalledCode"},
        "kkrimp": {"plugin": "kkr.kkrimp", "executable": "/opt/jukkr/bin/kkrflex.exe", "computer": "localhost",
                   "type": "InstalledCode"},
    }
    # `mlkkr status` reports them up (which needs the aiida-kkr fixes hooked into the image's environment
    # by the .pth file the mlkkr wheel installs).
    report = json.loads(podman("exec", name, "mlkkr", "status", "--json", check=False, timeout=120).stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["jukkr"]["state"] == "up", checks["jukkr"]
    assert "voronoi@localhost" in checks["jukkr"]["detail"] and "/opt/jukkr" in checks["jukkr"]["detail"]
    # JuKKR's own regression cases with the image's kkr.x, from the tests tarball built into the image.
    t0 = time.monotonic()
    result = podman("exec", "-w", "/tmp", name, "mlkkr", "jukkr", "check", "--json", check=False, timeout=600)
    report = json.loads(result.stdout)
    print(f"mlkkr jukkr check in the container: ok={report['ok']} in {time.monotonic() - t0:.1f} s, "
          f"tests from {report['tests']}")
    assert result.returncode == 0 and report["ok"], result.stdout[-3000:] + result.stderr[-2000:]
    assert {c["case"] for c in report["cases"]} == {"test_01", "test_02"}
    assert report["tests"].startswith("/opt/jukkr/share/tests/"), report["tests"]


TORCH = """
import pathlib, sysconfig, torch, e3nn
site = pathlib.Path(sysconfig.get_paths()['purelib'])
print(json.dumps({'torch': torch.__version__, 'e3nn': e3nn.__version__, 'cuda': torch.cuda.is_available(),
                  'nvidia': (site / 'nvidia').exists(), 'triton': (site / 'triton').exists(),
                  'stubs': (pathlib.Path(torch.__file__).parent / 'lib' / 'CPU-STUBS.txt').exists()}))
"""

PIPELINE = """
set -e
cd "$(mktemp -d)"
mlkkr data exchange --n 200 --seed 1 --kgrid 16 -o pairs.h5 --no-progress --no-cache > /dev/null
mlkkr train exchange --data pairs.h5 -o model --epochs 3 --mul 4 --latent 16 --layers 1 --r-env 4.5 \
  --r-host 4.5 --threads 1 --no-progress --json > train.json
mlkkr predict exchange model pairs.h5 -o pred.h5 --json > predict.json
python -c "import json; print(json.dumps({'train': json.load(open('train.json')), \
'predict': json.load(open('predict.json'))}))"
"""


@pytest.mark.slow
def test_singleuser_torch_of_the_variant_imports_and_mlkkr_trains_and_predicts_on_the_cpu(singleuser_container):
    name = singleuser_container["name"]
    found = in_container(name, TORCH)
    print(f"{VARIANT} image: {found}")
    assert found["torch"].startswith("2.") and found["e3nn"] == "0.6.0" and found["cuda"] is False
    if VARIANT == "cpu":  # PyPI's torch without its CUDA wheels; stubs stand in for the CUDA libraries
        assert not found["nvidia"] and not found["triton"] and found["stubs"], found
    else:
        assert found["nvidia"] and found["triton"] and not found["stubs"], found
    # pip agrees that the environment is complete (the CPU variant's torch no longer asks for CUDA wheels).
    pip = podman("exec", name, "pip", "check", check=False)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    # The exchange model end to end on the CPU: data from the engine, training, prediction.
    t0 = time.monotonic()
    out = podman("exec", name, "bash", "-c", PIPELINE, timeout=600).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print(f"data + train (3 epochs) + predict in the container: {time.monotonic() - t0:.1f} s")
    assert result["train"]["device"] == "cpu" and result["train"]["epochs_run"] == 3, result["train"]
    assert result["predict"]["n"] == 200, result["predict"]
