"""The Helm chart: real helm lint/template, strict Kubernetes schemas, the official z2jh values schema."""

from __future__ import annotations

import copy

import pytest
import yaml

from .chartlib import CHART, run, tool

pytestmark = pytest.mark.chart

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))


def merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def by_kind(manifests: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def test_chart_depends_on_the_official_jupyterhub_chart_4():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    (dep,) = meta["dependencies"]
    assert dep["name"] == "jupyterhub"
    assert dep["version"].startswith("4.")
    assert dep["repository"] == "https://hub.jupyter.org/helm-chart/"
    assert dep["condition"] == "jupyterhub.enabled"


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda v: v.name if v else "defaults")
def test_helm_lint_passes(helm, own_chart, values):
    extra = ["-f", str(values)] if values else []
    # The chart as it is: the only finding allowed is the dependency that cannot be fetched offline.
    result = run([helm, "lint", str(CHART), *extra])
    findings = [line for line in result.stdout.splitlines() if line.startswith(("[ERROR]", "[WARNING]"))]
    assert findings == [f"[WARNING] {CHART}: chart directory is missing these dependencies: jupyterhub"], result.stdout
    # Its own templates, strictly (warnings fail).
    run([helm, "lint", "--strict", str(own_chart), *extra])


RENDERINGS = {
    "defaults": [],
    "shared-services": ["--set", "postgresql.enabled=true", "--set", "rabbitmq.enabled=true"],
    "existing-store-claim": ["--set", "store.existingClaim=institute-store"],
    "oidc": ["-f", str(CHART / "examples" / "oidc.yaml")],
}


@pytest.mark.parametrize("name", RENDERINGS)
def test_rendered_manifests_pass_kubernetes_validate_strict(render, tmp_path, name):
    manifests = render(*RENDERINGS[name])
    assert manifests
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    result = run([tool("kubernetes-validate"), "--strict", str(path)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(manifests), result.stdout


def test_own_templates_store_archive_and_services(render):
    default = by_kind(render())
    claim = default[("PersistentVolumeClaim", "mlkkr-store")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == VALUES["store"]["size"]
    archive = default[("Deployment", "mlkkr-archive")]["spec"]["template"]["spec"]
    (container,) = archive["containers"]
    assert container["volumeMounts"] == [{"name": "store", "mountPath": "/srv/mlkkr-store"}]  # read-write
    token = next(e for e in container["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "hub.services.archive.apiToken"}
    assert archive["securityContext"]["runAsUser"] == 1000
    assert ("Service", "mlkkr-archive") in default
    assert not any(kind == "StatefulSet" for kind, _ in default)

    shared = by_kind(render(*RENDERINGS["shared-services"]))
    assert {("StatefulSet", "mlkkr-postgresql"), ("StatefulSet", "mlkkr-rabbitmq")} <= set(shared)
    assert "consumer_timeout, undefined" in shared[("ConfigMap", "mlkkr-rabbitmq")]["data"]["advanced.config"]

    existing = by_kind(render(*RENDERINGS["existing-store-claim"]))
    assert ("PersistentVolumeClaim", "mlkkr-store") not in existing
    volumes = existing[("Deployment", "mlkkr-archive")]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "institute-store"


def test_jupyterhub_values_of_the_platform():
    """What the issue asks of the z2jh values: image, CPU/GPU profiles, storage, store, culler, auth."""
    jh = VALUES["jupyterhub"]
    single = jh["singleuser"]
    assert single["image"]["name"] == VALUES["image"]["name"] and single["uid"] == 1000
    assert single["cmd"] == "start-mlkkr"
    profiles = {p["slug"]: p for p in single["profileList"]}
    assert set(profiles) == {"cpu", "gpu"} and profiles["cpu"]["default"] is True
    assert profiles["gpu"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert single["storage"]["type"] == "dynamic" and single["storage"]["homeMountPath"] == "/home/jovyan"
    (store_mount,) = single["storage"]["extraVolumeMounts"]
    assert store_mount["readOnly"] is True and store_mount["mountPath"] == single["extraEnv"]["MLKKR_STORE"]
    (store_volume,) = single["storage"]["extraVolumes"]
    assert store_volume["persistentVolumeClaim"] == {"claimName": VALUES["store"]["claimName"], "readOnly": True}
    assert jh["cull"]["enabled"] is True and jh["cull"]["timeout"] > 0
    assert jh["hub"]["config"]["JupyterHub"]["authenticator_class"] == "native"
    archive = VALUES["archive"]
    assert jh["hub"]["services"]["archive"]["url"] == f"http://{archive['serviceName']}:{archive['port']}"
    access = "access:services!service=archive"
    assert access in jh["hub"]["loadRoles"]["user"]["scopes"] and access in jh["hub"]["loadRoles"]["server"]["scopes"]
    assert single["extraEnv"]["MLKKR_ARCHIVE_URL"].startswith(jh["hub"]["services"]["archive"]["url"])


def test_user_pods_are_told_where_the_images_jukkr_lies():
    """MLKKR_JUKKR_PREFIX in every profile's environment is where the singleuser image builds JuKKR."""
    single = VALUES["jupyterhub"]["singleuser"]
    prefix = single["extraEnv"]["MLKKR_JUKKR_PREFIX"]
    dockerfile = (CHART.parents[1] / "docker" / "singleuser" / "Dockerfile").read_text()
    assert f"MLKKR_JUKKR_PREFIX={prefix} " in dockerfile and f"--prefix {prefix} " in dockerfile
    for profile in single["profileList"]:  # no profile overrides the environment with another prefix
        assert "MLKKR_JUKKR_PREFIX" not in str(profile.get("kubespawner_override", {}))


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda v: v.name if v else "defaults")
def test_jupyterhub_values_validate_against_the_official_schema(z2jh_validator, values):
    jh = VALUES["jupyterhub"]
    if values:
        jh = merged(jh, yaml.safe_load(values.read_text())["jupyterhub"])
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in z2jh_validator.iter_errors(jh)]
    assert errors == []


def test_the_official_schema_check_bites(z2jh_validator):
    """A misspelt key and a wrong type under jupyterhub: are caught (the check is not vacuous)."""
    bad = merged(VALUES["jupyterhub"], {"singleuser": {"storag": {"capacity": "1Gi"}, "uid": "jovyan"}})
    messages = [e.message for e in z2jh_validator.iter_errors(bad)]
    assert any("storag" in m for m in messages), messages
    assert any("'jovyan' is not of type" in m for m in messages), messages


def test_relative_jukkr_prefix_is_rejected_by_the_charts_schema(helm, own_chart):
    setting = "jupyterhub.singleuser.extraEnv.MLKKR_JUKKR_PREFIX=opt/jukkr"
    result = run([helm, "template", "mlkkr", str(own_chart), "--set", setting], check=False)
    assert result.returncode != 0
    assert "MLKKR_JUKKR_PREFIX" in result.stderr and "does not match pattern" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["jupyterhub.singleuser.storage.capacity=-10Gi", "store.size=-1Gi",
                                     "postgresql.storage.size=-20Gi"])
def test_negative_storage_size_is_rejected_by_the_charts_schema(helm, own_chart, setting):
    result = run([helm, "template", "mlkkr", str(own_chart), "--set", setting], check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert "-" in result.stderr and setting.split("=")[0].split(".")[-1] in result.stderr, result.stderr
    # The real chart (with its dependency declared) rejects it in lint as well.
    lint = run([helm, "lint", str(CHART), "--set", setting], check=False)
    assert lint.returncode != 0 and "does not match pattern" in lint.stdout, lint.stdout
