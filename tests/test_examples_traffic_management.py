"""examples/traffic-management: every file translates without a problem, Envoy accepts the
result, and each task shows up in the routes."""

from __future__ import annotations

from pathlib import Path

from pilotfish.model.configset import build_config_set
from pilotfish.node_id import NodeId
from pilotfish.sources.files import FileSource
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from tests.test_golden import envoy_accepts

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "traffic-management"


def test_examples_translate_cleanly_and_envoy_accepts_them() -> None:
    config = build_config_set(FileSource(EXAMPLE).load())
    assert config.errors == ()
    node_id = NodeId.for_pod("router", "10.0.0.1", "ingress", "istio-system")
    proxy = Proxy.from_node(
        str(node_id), {"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"}
    )
    translation = translate(config, proxy)
    assert translation.status == (), [s.describe() for s in translation.status]
    envoy_accepts(translation)
    (routes,) = translation.routes
    domains = {d for v in routes.virtual_hosts for d in v.domains}
    assert {
        "reviews.example.com",
        "shifting.example.com",
        "faults.example.com",
        "timeouts.example.com",
        "mirror.example.com",
        "redirect.example.com",
        "cors.example.com",
        "bookinfo.example.com",
        "httpbin.example.com",  # from the Ingress
    } <= domains
