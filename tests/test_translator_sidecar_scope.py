"""Which Sidecar resource applies to a sidecar proxy, and what its egress hosts import."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.mesh_config import MeshSettings
from pilotfish.model.objects import IstioObject, ObjectMeta
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.sidecar_scope import (
    EgressScope,
    HostImport,
    applicable_sidecar,
    sidecar_scope,
)


def proxy(namespace: str = "shop", **labels: str) -> Proxy:
    node = f"sidecar~10.1.0.5~app-0.{namespace}~{namespace}.svc.cluster.local"
    return Proxy("sidecar", node, "10.1.0.5", "app-0", namespace, labels)


def sidecar(name: str, namespace: str, spec: str, created: str = "") -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: {namespace}{stamp}}}
spec: {spec}
"""


def config_of(*documents: str) -> ConfigSet:
    config = build_config_set([parse_manifest_text("---\n".join(documents), "sidecars.yaml")])
    assert config.errors == (), [e.describe() for e in config.errors]
    return config


def chosen(config: ConfigSet, who: Proxy) -> str | None:
    found = applicable_sidecar(config, who, Diagnostics())
    return None if found is None else f"{found.meta.namespace}/{found.meta.name}"


EGRESS = "{egress: [{hosts: ['./*']}]}"


def test_a_matching_selector_wins_over_the_namespace_default() -> None:
    config = config_of(
        sidecar("default", "shop", EGRESS, "2024-01-01T00:00:00Z"),
        sidecar("ratings", "shop", "{workloadSelector: {labels: {app: ratings}}, " + EGRESS[1:]),
        sidecar("mesh", "istio-system", EGRESS),
    )
    assert chosen(config, proxy(app="ratings")) == "shop/ratings"
    assert chosen(config, proxy(app="reviews")) == "shop/default"
    assert chosen(config, proxy("other", app="ratings")) == "istio-system/mesh"


def test_the_oldest_matching_selector_wins() -> None:
    selector = "{workloadSelector: {labels: {app: ratings}}, " + EGRESS[1:]
    config = config_of(
        sidecar("newer", "shop", selector, "2024-05-01T00:00:00Z"),
        sidecar("older", "shop", selector, "2024-01-01T00:00:00Z"),
    )
    assert chosen(config, proxy(app="ratings")) == "shop/older"


def test_a_second_namespace_default_is_ignored_and_reported() -> None:
    config = config_of(
        sidecar("a", "shop", EGRESS, "2024-01-01T00:00:00Z"),
        sidecar("b", "shop", EGRESS, "2024-02-01T00:00:00Z"),
    )
    diag = Diagnostics()
    found = applicable_sidecar(config, proxy(), diag)
    assert found is not None and found.meta.name == "a"
    (problem,) = diag.sorted()
    assert (problem.name, problem.severity) == ("b", "warning")
    assert "this one is ignored" in problem.message


def test_the_root_namespace_follows_the_mesh_config() -> None:
    config = config_of(sidecar("mesh", "mesh-root", EGRESS))
    assert chosen(config, proxy()) is None
    moved = replace(config, mesh=MeshSettings(root_namespace="mesh-root"))
    assert chosen(moved, proxy()) == "mesh-root/mesh"


def test_a_root_namespace_sidecar_with_a_selector_is_not_the_mesh_default() -> None:
    config = config_of(
        sidecar(
            "only-ratings", "istio-system", "{workloadSelector: {labels: {app: r}}, " + EGRESS[1:]
        )
    )
    assert chosen(config, proxy(app="r")) is None


def test_no_sidecar_imports_everything_under_the_mesh_policy() -> None:
    config = replace(config_of(), mesh=MeshSettings(outbound_policy="REGISTRY_ONLY"))
    scope = sidecar_scope(config, proxy(), Diagnostics())
    assert scope.sidecar is None
    assert scope.egress == (EgressScope(),)
    assert scope.outbound_policy == "REGISTRY_ONLY"
    assert scope.imports_service("anywhere", "x.anywhere.svc.cluster.local")


def scope_of(spec: str, namespace: str = "shop") -> tuple[EgressScope, ...]:
    config = config_of(sidecar("s", namespace, spec))
    diag = Diagnostics()
    scope = sidecar_scope(config, proxy(namespace), diag)
    assert diag.sorted() == ()
    return scope.egress


@pytest.mark.parametrize(
    ("hosts", "namespace", "host", "imported"),
    [
        ("['./*']", "shop", "reviews.shop.svc.cluster.local", True),
        ("['./*']", "other", "reviews.other.svc.cluster.local", False),
        ("['istio-system/*']", "istio-system", "istiod.istio-system.svc.cluster.local", True),
        ("['*/*.example.com']", "any", "api.example.com", True),
        ("['*/*.example.com']", "any", "example.com", False),
        ("['*/api.example.com']", "ext", "api.example.com", True),
        ("['ext/api.example.com']", "shop", "api.example.com", False),
        (
            "['*/*', '~shop/secret.shop.svc.cluster.local']",
            "shop",
            "secret.shop.svc.cluster.local",
            False,
        ),
        (
            "['*/*', '~shop/secret.shop.svc.cluster.local']",
            "shop",
            "open.shop.svc.cluster.local",
            True,
        ),
        ("['~/*']", "shop", "reviews.shop.svc.cluster.local", False),
        # A wildcard ServiceEntry host is imported by a wider or equal import only.
        ("['*/*.example.com']", "ext", "*.api.example.com", True),
        ("['*/api.example.com']", "ext", "*.example.com", False),
    ],
)
def test_egress_host_imports(hosts: str, namespace: str, host: str, imported: bool) -> None:
    (egress,) = scope_of("{egress: [{hosts: " + hosts + "}]}")
    assert egress.imports_service(namespace, host) is imported


def virtual_service(namespace: str) -> IstioObject:
    return IstioObject("VirtualService", ObjectMeta(name="vs", namespace=namespace), None)  # type: ignore[arg-type]


def test_virtual_service_hosts_match_either_way_in_their_namespace() -> None:
    spec = "{egress: [{hosts: ['./reviews.shop.svc.cluster.local', '*/*.example.com']}]}"
    scope = sidecar_scope(config_of(sidecar("s", "shop", spec)), proxy(), Diagnostics())
    assert scope.egress[0].imports == (
        HostImport("shop", "reviews.shop.svc.cluster.local"),
        HostImport("*", "*.example.com"),
    )
    shop = virtual_service("shop")
    assert scope.imports_virtual_service(shop, ["reviews"])  # short name, resolved in shop
    assert scope.imports_virtual_service(shop, ["*.shop.svc.cluster.local"])  # wider
    assert scope.imports_virtual_service(shop, ["api.example.com"])
    assert not scope.imports_virtual_service(shop, ["ratings"])
    assert not scope.imports_virtual_service(
        virtual_service("web"), ["reviews.shop.svc.cluster.local"]
    )


def test_listener_settings_are_kept() -> None:
    port_listener, catch_all = scope_of(
        "{egress: [{port: {number: 9080, protocol: HTTP, name: http}, bind: 127.0.0.1,"
        " captureMode: NONE, hosts: ['./*']}, {hosts: ['istio-system/*']}]}"
    )
    assert (port_listener.port, port_listener.port_protocol, port_listener.bind) == (
        9080,
        "HTTP",
        "127.0.0.1",
    )
    assert (port_listener.capture_mode, port_listener.index) == ("NONE", 0)
    assert (catch_all.port, catch_all.capture_mode, catch_all.index) == (None, "DEFAULT", 1)


def test_sidecar_outbound_policy_overrides_the_mesh() -> None:
    config = config_of(sidecar("s", "shop", "{outboundTrafficPolicy: {mode: REGISTRY_ONLY}}"))
    scope = sidecar_scope(config, proxy(), Diagnostics())
    assert scope.outbound_policy == "REGISTRY_ONLY"
    assert scope.egress == (EgressScope(),)  # no egress: the default one


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        ("{egress: [{hosts: ['reviews']}]}", "spec.egress[0].hosts[0]", "namespace/host"),
        ("{egress: [{hosts: ['a/b/c']}]}", "spec.egress[0].hosts[0]", "namespace/host"),
        ("{egress: [{hosts: ['./']}]}", "spec.egress[0].hosts[0]", "no host"),
        ("{egress: [{hosts: ['./*']}, {port: {number: 80, protocol: HTTP, name: h}, hosts: ['./*']}]}",
         "spec.egress[0].port", "must be the last"),
        ("{egress: [{port: {number: 80, protocol: HTTP, name: h}, hosts: ['./*']},"
         " {port: {number: 80, protocol: HTTP, name: g}, hosts: ['./*']}]}",
         "spec.egress[1].port.number", "already used"),
        ("{egress: [{port: {number: 80, protocol: HTTP, name: h}}]}", "spec.egress[0].hosts", "needs hosts"),
    ],
)  # fmt: skip
def test_bad_egress_is_reported_at_its_field(spec: str, field: str, says: str) -> None:
    diag = Diagnostics()
    sidecar_scope(config_of(sidecar("s", "shop", spec)), proxy(), diag)
    (problem,) = diag.sorted()
    assert (problem.kind, problem.name, problem.field) == ("Sidecar", "s", field)
    assert says in problem.message
