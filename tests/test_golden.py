"""Golden tests: testdata/<case>/ -> the exact resources each proxy is served.

Each case holds its manifests (`input.yaml`, or an `input/` directory when the case is
about several files), an optional `proxies.yaml` (default: one ingress gateway proxy
`ingress` in istio-system labelled istio=ingressgateway; `type: sidecar` for a sidecar),
an optional `mesh.yaml` (the MeshConfig, as `--mesh-config` reads it), and
`expected/<proxy>.yaml`:
listeners, routes, clusters, endpoints, secrets and status, compared as text.

`UPDATE_GOLDEN=1 make test` (or `make golden`) rewrites the expected files and deletes
stale ones. Every output is also handed to a real Envoy (`envoy --mode validate`), so a
golden file can never enshrine a config Envoy would reject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.documents import ParsedFile
from pilotfish.model.mesh_config import parse_mesh_config
from pilotfish.node_id import NodeId
from pilotfish.sources.files import FileSource, read_manifest_file
from pilotfish.translator.dump import to_yaml, translation_to_data
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate
from testsupport.envoy import validate_config
from testsupport.static_bootstrap import static_bootstrap_for

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

DEFAULT_PROXIES = [
    {
        "name": "ingress",
        "type": "router",
        "namespace": "istio-system",
        "labels": {"istio": "ingressgateway"},
    }
]


@dataclass(frozen=True)
class GoldenProxy:
    name: str
    proxy: Proxy


def case_dirs() -> list[Path]:
    return sorted(p for p in TESTDATA.iterdir() if p.is_dir())


def load_case_config(case: Path) -> ConfigSet:
    files: list[ParsedFile]
    if (case / "input").is_dir():
        files = FileSource(case / "input").load()
    else:
        files = [read_manifest_file(case / "input.yaml", "input.yaml")]
    config = build_config_set(files)
    if (case / "mesh.yaml").exists():
        mesh = yaml.safe_load((case / "mesh.yaml").read_text())
        config = with_mesh(config, *parse_mesh_config(mesh, "mesh.yaml"))
    return config


def case_proxies(case: Path) -> list[GoldenProxy]:
    path = case / "proxies.yaml"
    specs: list[dict[str, Any]] = (
        yaml.safe_load(path.read_text()) if path.exists() else DEFAULT_PROXIES
    )
    proxies = []
    for spec in specs:
        node_id = NodeId.for_pod(
            spec.get("type", "router"), spec.get("ip", "10.0.0.1"), spec["name"], spec["namespace"]
        )
        metadata = {"LABELS": spec.get("labels", {}), "NAMESPACE": spec["namespace"]}
        proxies.append(GoldenProxy(spec["name"], Proxy.from_node(str(node_id), metadata)))
    return proxies


def envoy_accepts(translation: Translation) -> None:
    bootstrap = static_bootstrap_for(
        listeners=translation.listeners,
        routes=translation.routes,
        clusters=translation.clusters,
        endpoints=translation.endpoints,
        secrets=translation.secrets,
    )
    validate_config(bootstrap)


@pytest.mark.parametrize("case", case_dirs(), ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    config = load_case_config(case)
    expected_dir = case / "expected"
    produced: dict[Path, str] = {}
    for golden in case_proxies(case):
        translation = translate(config, golden.proxy)
        produced[expected_dir / f"{golden.name}.yaml"] = to_yaml(
            translation_to_data(translation, config.errors)
        )
        envoy_accepts(translation)

    if UPDATE:
        expected_dir.mkdir(exist_ok=True)
        for stale in set(expected_dir.glob("*.yaml")) - set(produced):
            stale.unlink()
        for path, text in produced.items():
            path.write_text(text)
        return

    for path, text in produced.items():
        assert path.exists(), f"{path} is missing: run `make golden` and review the diff"
        assert text == path.read_text(), (
            f"{path} differs from the translator's output: run `make golden` and review the diff"
        )
    leftovers = set(expected_dir.glob("*.yaml")) - set(produced)
    assert not leftovers, f"stale golden files (no such proxy): {sorted(map(str, leftovers))}"


def test_every_case_has_input() -> None:
    for case in case_dirs():
        assert (case / "input.yaml").exists() or (case / "input").is_dir(), f"{case} has no input"
