"""deploy/ and the Dockerfile: valid Kubernetes objects that agree with pilotfish itself.

No cluster here, so each manifest is checked two independent ways: against the
Kubernetes OpenAPI schemas that `kubernetes-validate` ships (its strict variant rejects
unknown fields), and by loading it into the `kubernetes` client's models while checking
every key against the model's `attribute_map` (the models alone ignore unknown keys).
Then what the manifests say is checked against what pilotfish really has: the kinds and
versions it parses, the flags its CLI takes, the paths its debug server serves, and the
Envoy flags and bootstrap the gateway runs with (`envoy --mode validate`).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from pilotfish.api.kinds import API_VERSIONS, SPEC_TYPES
from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from pilotfish.server.debug_http import build_app
from testsupport.envoy import envoy_binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
NAMESPACE = "istio-system"
GROUP = "networking.istio.io"

# Oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

# Everything pilotfish lists and watches (issue 3): (API group, resource). The
# ClusterRole must grant get/list/watch on each, and nothing more.
WATCHED = {
    (GROUP, "gateways"),
    (GROUP, "virtualservices"),
    (GROUP, "destinationrules"),
    (GROUP, "serviceentries"),
    (GROUP, "sidecars"),
    (GROUP, "workloadentries"),
    ("", "services"),
    ("", "secrets"),
    ("", "namespaces"),
    ("", "pods"),
    ("discovery.k8s.io", "endpointslices"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
}
# Kind -> (plural, shortNames) as Istio's own CRDs have them.
ISTIO_NAMES = {
    "Gateway": ("gateways", ["gw"]),
    "VirtualService": ("virtualservices", ["vs"]),
    "DestinationRule": ("destinationrules", ["dr"]),
    "ServiceEntry": ("serviceentries", ["se"]),
    "Sidecar": ("sidecars", []),
    "WorkloadEntry": ("workloadentries", ["we"]),
}


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in MANIFESTS for doc in load_documents(path)]


def doc_id(item: tuple[str, dict[str, Any]]) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


DOCUMENTS = all_documents()


def find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers" if init else "containers", []))


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    everything = containers(deployment) + containers(deployment, init=True)
    (found,) = (c for c in everything if c["name"] == name)
    return found


# --- schema checks -------------------------------------------------------------------


def schema_errors(doc: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{path}: {exc.message}"
    return None


def model_class_name(doc: dict[str, Any]) -> str:
    version: str = doc["apiVersion"].rpartition("/")[2]
    return f"{version[0].upper()}{version[1:]}{doc['kind']}"


_CLIENT = kubernetes.client.ApiClient()
_PRIMITIVES = {"str", "int", "float", "bool", "date", "datetime", "object"}
# Container types as the client spells them: List[X]/Dict[str, X]/Optional[X] (recent
# releases) or list[X]/dict(str, X) (older ones).
_CONTAINER = re.compile(r"^(Optional|List|list|Dict|dict)[\[(](.*)[\])]$")


def unknown_keys(data: Any, type_name: str, path: str = "") -> list[str]:
    """Paths of keys in ``data`` that the client model ``type_name`` has no field for.

    The models' deserializer drops unknown keys silently, so a misspelt field would load
    fine; this walks the same types (``openapi_types``) and checks each key against the
    model's ``attribute_map`` (its JSON names).
    """
    if data is None or type_name in _PRIMITIVES:
        return []
    if container_type := _CONTAINER.match(type_name):
        outer, inner = container_type.groups()
        if outer == "Optional":
            return unknown_keys(data, inner, path)
        if outer in ("List", "list"):
            return [
                e for i, item in enumerate(data) for e in unknown_keys(item, inner, f"{path}[{i}]")
            ]
        value_type = inner.split(", ", 1)[1]
        return [e for k, v in data.items() for e in unknown_keys(v, value_type, f"{path}.{k}")]
    model = getattr(kubernetes.client.models, type_name)
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in by_json:
            problems.append(f"{path}.{key}".lstrip("."))
            continue
        field_type = model.openapi_types[by_json[key]]
        problems += unknown_keys(value, field_type, f"{path}.{key}")
    return problems


def model_errors(doc: dict[str, Any]) -> list[str]:
    type_name = model_class_name(doc)
    obj = _CLIENT._ApiClient__deserialize(doc, type_name)  # type: ignore[attr-defined]
    assert type(obj).__name__ == type_name
    problems = unknown_keys(doc, type_name)
    # And the other way: what the model kept, serialized again, is what the file said
    # (no value lost or coerced, e.g. a string where the API wants a number).
    serialized = _CLIENT.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    if not problems and serialized != doc:
        problems.append("the model does not serialize back to the document")
    return problems


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", DOCUMENTS, ids=doc_id)
def test_document_matches_the_kubernetes_openapi_schema(
    item: tuple[str, dict[str, Any]], version: str
) -> None:
    assert schema_errors(item[1], version) is None


@pytest.mark.parametrize("item", DOCUMENTS, ids=doc_id)
def test_document_loads_into_the_kubernetes_client_models(
    item: tuple[str, dict[str, Any]],
) -> None:
    assert model_errors(item[1]) == []


def test_both_checks_catch_a_misspelt_field() -> None:
    good = find("Deployment", "pilotfish")
    bad = copy.deepcopy(good)
    container(bad, "pilotfish")["readinessProbe"]["httpGet"]["paht"] = "/healthz/ready"
    assert schema_errors(good, K8S_VERSIONS[-1]) is None
    assert "paht" in (schema_errors(bad, K8S_VERSIONS[-1]) or "")
    assert model_errors(bad) == ["spec.template.spec.containers[0].readinessProbe.httpGet.paht"]
    typo_in_crd = copy.deepcopy(find("CustomResourceDefinition", "gateways.networking.istio.io"))
    typo_in_crd["spec"]["versions"][0]["subresource"] = {"status": {}}
    assert schema_errors(typo_in_crd, K8S_VERSIONS[-1]) is not None
    assert model_errors(typo_in_crd) == ["spec.versions[0].subresource"]


def test_every_namespaced_object_is_in_istio_system() -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for _, doc in DOCUMENTS:
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"], doc_id(("", doc))
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, doc_id(("", doc))
    assert find("Namespace", NAMESPACE)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)
    # The Namespace before anything that lives in it (kustomize sorts too; kubectl
    # apply -f of the files in this order works as well).
    assert kustomization["resources"][0] == "namespace.yaml"
    images = {i["name"] for i in kustomization.get("images", [])}
    used = {
        c["image"].partition(":")[0]
        for _, d in DOCUMENTS
        if d["kind"] == "Deployment"
        for c in containers(d) + containers(d, init=True)
    }
    assert images <= used


# --- CRDs ----------------------------------------------------------------------------


def crds() -> dict[str, dict[str, Any]]:
    return {
        d["spec"]["names"]["kind"]: d
        for _, d in DOCUMENTS
        if d["kind"] == "CustomResourceDefinition"
    }


def test_crds_declare_exactly_the_kinds_pilotfish_parses() -> None:
    assert set(crds()) == set(SPEC_TYPES)


@pytest.mark.parametrize("kind", sorted(SPEC_TYPES))
def test_crd_is_named_and_versioned_as_istio_does(kind: str) -> None:
    crd = crds()[kind]
    plural, short_names = ISTIO_NAMES[kind]
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names.get("shortNames", []) == short_names
    assert names["categories"] == ["istio-io", "networking-istio-io"]

    served = {f"{GROUP}/{v['name']}" for v in spec["versions"] if v["served"]}
    assert served == set(API_VERSIONS)
    assert [v["name"] for v in spec["versions"] if v["storage"]] == ["v1"]
    for version in spec["versions"]:
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        for field in ("spec", "status"):
            # pilotfish validates the spec itself, per field (see the comment in crds.yaml).
            assert schema["properties"][field]["type"] == "object"
            assert schema["properties"][field]["x-kubernetes-preserve-unknown-fields"] is True


def test_crd_printer_columns_point_at_real_spec_fields() -> None:
    for kind, crd in crds().items():
        fields = set(SPEC_TYPES[kind].DESCRIPTOR.fields_by_camelcase_name)
        for version in crd["spec"]["versions"]:
            for column in version.get("additionalPrinterColumns", []):
                path = column["jsonPath"]
                if path.startswith(".spec."):
                    assert path.removeprefix(".spec.") in fields, (kind, path)
                else:
                    assert path == ".metadata.creationTimestamp"


# --- RBAC ----------------------------------------------------------------------------


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_clusterrole_reads_everything_pilotfish_watches_and_writes_nothing() -> None:
    granted = grants(find("ClusterRole", "pilotfish"))
    assert set(granted) == WATCHED
    for resource, verbs in granted.items():
        assert verbs == {"get", "list", "watch"}, resource


def test_crds_and_rbac_name_the_same_istio_resources() -> None:
    plurals = {crd["spec"]["names"]["plural"] for crd in crds().values()}
    assert plurals == {resource for group, resource in WATCHED if group == GROUP}


def test_status_writer_may_only_patch_istio_status() -> None:
    granted = grants(find("ClusterRole", "pilotfish-status-writer"))
    assert set(granted) == {(g, f"{r}/status") for g, r in WATCHED if g == GROUP}
    assert all(verbs == {"patch", "update"} for verbs in granted.values())


@pytest.mark.parametrize("role", ["pilotfish", "pilotfish-status-writer"])
def test_clusterrole_is_bound_to_the_pilotfish_service_account(role: str) -> None:
    binding = find("ClusterRoleBinding", role)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role,
    }
    account = find("ServiceAccount", "pilotfish")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "pilotfish",
            "namespace": account["metadata"]["namespace"],
        }
    ]
    pod = find("Deployment", "pilotfish")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pilotfish"


# --- pilotfish Deployment and Service ------------------------------------------------


def cli_help(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pilotfish.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )
    return done.stdout


def help_flags(*command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", cli_help(*command)))


def split_cli(args: list[str]) -> tuple[list[str], str, list[str]]:
    """``[global flags..., COMMAND, command flags...]`` -> the three parts."""
    i = 0
    while args[i].startswith("-"):
        i += 2 if args[i] == "--log-level" else 1
    return args[:i], args[i], args[i + 1 :]


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_pilotfish_args_use_only_flags_pilotfish_has() -> None:
    args = container(find("Deployment", "pilotfish"), "pilotfish")["args"]
    global_flags, command, command_args = split_cli(args)
    assert command == "serve"
    assert {a for a in global_flags if a.startswith("--")} <= help_flags()
    used = {a for a in command_args if a.startswith("--")}
    assert used <= help_flags("serve")
    assert {"--kubernetes", "--xds-address", "--debug-address"} <= used


def test_pilotfish_deployment() -> None:
    deployment = find("Deployment", "pilotfish")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    main = container(deployment, "pilotfish")
    assert main["image"] == "pilotfish:latest"
    assert main["resources"]["requests"] and main["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False


def debug_paths() -> set[str]:
    app = build_app(None, lambda: True)  # type: ignore[arg-type]  # handlers not called
    return {route.resource.canonical for route in app.router.routes() if route.resource}


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_pilotfish_probes_hit_the_debug_server_readiness_path() -> None:
    main = container(find("Deployment", "pilotfish"), "pilotfish")
    debug_port = port_of(flag_value(main["args"], "--debug-address"))
    assert flag_value(main["args"], "--debug-address").startswith("0.0.0.0:")
    assert "/healthz/ready" in debug_paths()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = main[probe]["httpGet"]
        assert get == {"path": "/healthz/ready", "port": debug_port}, probe


def test_pilotfish_service_exposes_the_ports_pilotfish_listens_on() -> None:
    main = container(find("Deployment", "pilotfish"), "pilotfish")
    listening = {
        "grpc-xds": port_of(flag_value(main["args"], "--xds-address")),
        "http-monitoring": port_of(flag_value(main["args"], "--debug-address")),
    }
    assert listening == {"grpc-xds": 15010, "http-monitoring": 15014}
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == listening
    service = find("Service", "pilotfish")
    assert (
        service["spec"]["selector"]
        == find("Deployment", "pilotfish")["spec"]["selector"]["matchLabels"]
    )
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        name: (port, port) for name, port in listening.items()
    }


def test_disruption_budget_selects_pilotfish() -> None:
    budget = find("PodDisruptionBudget", "pilotfish")
    labels = find("Deployment", "pilotfish")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < find("Deployment", "pilotfish")["spec"]["replicas"]


# --- ingress gateway -----------------------------------------------------------------


def gateway() -> dict[str, Any]:
    return find("Deployment", "istio-ingressgateway")


def envoy_container() -> dict[str, Any]:
    return container(gateway(), "istio-proxy")


def envoy_validate(bootstrap_path: Path, extra_args: list[str]) -> None:
    """``envoy --mode validate`` on the bootstrap as Envoy would be started with it."""
    args = list(extra_args)
    # The -c path is the pod's; point it at the file under test. Every other flag is
    # passed as the container has it (--config-yaml merges into the bootstrap).
    args[args.index("-c") + 1] = str(bootstrap_path)
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def test_gateway_pods_carry_the_label_gateways_select() -> None:
    labels = gateway()["spec"]["template"]["metadata"]["labels"]
    assert labels["istio"] == "ingressgateway"
    assert gateway()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert envoy_container()["image"] == "envoyproxy/envoy:v1.40-latest"


def test_gateway_service_is_istios() -> None:
    service = find("Service", "istio-ingressgateway")
    assert service["spec"]["type"] == "LoadBalancer"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports["http2"] == (80, 8080)
    assert ports["https"] == (443, 8443)
    labels = gateway()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {p["containerPort"] for p in envoy_container()["ports"]}
    assert {target for _, target in ports.values()} <= container_ports


@pytest.fixture(scope="module")
def rendered_bootstrap() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Run the init container's script as the pod would, with the downward API faked."""
    init = container(gateway(), "bootstrap")
    assert init["image"] == "pilotfish:latest"
    assert init["command"] == ["/bin/sh", "-c"]
    (script,) = init["args"]
    pod_labels = gateway()["spec"]["template"]["metadata"]["labels"]
    # What the ReplicaSet adds, and the kubelet writes as the downward API does: sorted
    # `key="value"` lines, no newline at the end.
    pod_labels = {**pod_labels, "pod-template-hash": "5d8f7c9b4"}
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    with tempfile.TemporaryDirectory(prefix="gateway-pod-") as tmp:
        podinfo = Path(tmp) / "podinfo"
        proxy = Path(tmp) / "proxy"
        podinfo.mkdir()
        proxy.mkdir()
        (podinfo / "labels").write_text(
            "\n".join(f'{k}="{v}"' for k, v in sorted(pod_labels.items()))
        )
        local = script.replace(mounts["podinfo"], str(podinfo)).replace(
            mounts["bootstrap"], str(proxy)
        )
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "POD_NAME": "istio-ingressgateway-5d8f7c9b4-x2x7q",
            "POD_NAMESPACE": NAMESPACE,
            "INSTANCE_IP": "10.244.1.7",
        }
        assert {e["name"] for e in init["env"]} == {"POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"}
        subprocess.run(["/bin/sh", "-c", local], env=env, check=True, timeout=60)
        (written,) = proxy.iterdir()
        # The Envoy container reads the file the init container wrote, by its pod path.
        envoy_mounts = {m["name"]: m["mountPath"] for m in envoy_container()["volumeMounts"]}
        pod_path = Path(envoy_mounts["bootstrap"]) / written.name
        assert flag_value(envoy_container()["args"], "-c") == str(pod_path)
        expected = render_bootstrap(
            BootstrapOptions(
                proxy_type="router",
                name=env["POD_NAME"],
                namespace=NAMESPACE,
                labels=pod_labels,
                ip=env["INSTANCE_IP"],
                xds_address="pilotfish.istio-system.svc:15010",
                admin_port=15000,
            )
        )
        yield written, expected


def test_gateway_init_container_writes_the_pilotfish_bootstrap(
    rendered_bootstrap: tuple[Path, dict[str, Any]],
) -> None:
    written, expected = rendered_bootstrap
    assert yaml.safe_load(written.read_text()) == expected


def test_gateway_bootstrap_flags_exist() -> None:
    (script,) = container(gateway(), "bootstrap")["args"]
    words = shlex.split(script.split("pilotfish bootstrap", 1)[1].replace("\\\n", " "))
    assert {w for w in words if w.startswith("--")} <= help_flags("bootstrap")


def test_gateway_xds_address_is_the_pilotfish_service() -> None:
    (script,) = container(gateway(), "bootstrap")["args"]
    service = find("Service", "pilotfish")
    (xds_port,) = (p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc-xds")
    address = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{xds_port}"
    assert f"--xds-address {address} " in script


def test_gateway_envoy_accepts_its_bootstrap_and_flags(
    rendered_bootstrap: tuple[Path, dict[str, Any]],
) -> None:
    written, _ = rendered_bootstrap
    envoy = envoy_container()
    assert envoy["command"] == ["envoy"]
    envoy_validate(written, envoy["args"])


def health_routes() -> dict[int, set[str]]:
    """Port -> paths of the static listeners merged in with --config-yaml."""
    extra = yaml.safe_load(flag_value(envoy_container()["args"], "--config-yaml"))
    routes: dict[int, set[str]] = {}
    for listener in extra["static_resources"]["listeners"]:
        port = listener["address"]["socket_address"]["port_value"]
        (chain,) = listener["filter_chains"]
        (hcm,) = chain["filters"]
        for host in hcm["typed_config"]["route_config"]["virtual_hosts"]:
            routes.setdefault(port, set()).update(r["match"]["path"] for r in host["routes"])
    return routes


def test_gateway_probe_and_scrape_ports_are_envoy_listeners() -> None:
    envoy = envoy_container()
    routes = health_routes()
    probe = envoy["readinessProbe"]["httpGet"]
    assert probe["path"] in routes[probe["port"]]
    annotations = gateway()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes[int(annotations["prometheus.io/port"])]
    container_ports = {p["containerPort"] for p in envoy["ports"]}
    assert set(routes) <= container_ports


def test_gateway_runs_non_root_read_only() -> None:
    pod = gateway()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in containers(gateway()) + containers(gateway(), init=True):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert c["securityContext"]["runAsUser"] > 0, c["name"]
        assert c["resources"]["requests"], c["name"]
    assert container(gateway(), "bootstrap")["securityContext"]["runAsUser"] == dockerfile_uid()


def test_envoy_flags_exist() -> None:
    done = subprocess.run(
        [envoy_binary(), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    known = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", done.stdout + done.stderr))
    used = {a for a in envoy_container()["args"] if a.startswith("--")}
    assert used <= known


# --- Dockerfile ----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) for each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_uid() -> int:
    (user,) = (rest for op, rest in dockerfile() if op == "USER")
    return int(user.partition(":")[0])


def test_dockerfile() -> None:
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("ENTRYPOINT", '["pilotfish"]') in instructions
    (exposed,) = (rest for op, rest in instructions if op == "EXPOSE")
    assert set(exposed.split()) == {"15010", "15014"}
    assert dockerfile_uid() > 0
    assert any(op == "RUN" and "pip install ." in rest for op, rest in instructions)


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: everything out, then each needed path back in.
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = [rest.split()[:-1] for op, rest in dockerfile() if op == "COPY"]
    for sources in copied:
        for source in sources:
            assert source in allowed, source
            assert (ROOT / source).exists(), source
