"""pilotfish.model.configset and references: one ConfigSet from many files, the last valid
version of each object kept in force, and dangling gateway references reported."""

from __future__ import annotations

from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import ParsedFile, parse_manifest_text
from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import ConfigKey, IstioObject
from pilotfish.model.references import gateway_refs, resolve_gateway_ref


def files(**texts: str) -> list[ParsedFile]:
    """`a_yaml="..."` -> a ParsedFile named a.yaml."""
    return [parse_manifest_text(text, name.replace("_", ".")) for name, text in texts.items()]


def gateway(name: str, namespace: str = "default", extra_meta: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}{extra_meta}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
"""


def virtual_service(
    name: str,
    namespace: str = "default",
    gateways: str = "[]",
    timeout: str = "5s",
    extra: str = "",
) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: [web]
  gateways: {gateways}
  http:
  - timeout: {timeout}
    route: [{{destination: {{host: web}}}}]
{extra}"""


def vs_timeout(config: ConfigSet, name: str, namespace: str = "default") -> int:
    obj = config.get("VirtualService", namespace, name)
    assert isinstance(obj, IstioObject)
    return cast(vs_pb.VirtualService, obj.spec).http[0].timeout.seconds


def messages(config: ConfigSet) -> list[str]:
    return [e.message for e in config.errors]


# --- keys and order ---------------------------------------------------------------------


def test_objects_are_keyed_by_kind_namespace_and_name() -> None:
    config = build_config_set(
        files(
            a_yaml="---\n".join(
                [
                    gateway("web"),
                    gateway("web", "other"),
                    virtual_service("web"),
                    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
                    "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n",
                ]
            )
        )
    )
    assert config.errors == ()
    assert not config.has_errors
    assert sorted(config.objects) == [
        ConfigKey("Gateway", "default", "web"),
        ConfigKey("Gateway", "other", "web"),
        ConfigKey("Namespace", "", "web"),
        ConfigKey("Service", "default", "web"),
        ConfigKey("VirtualService", "default", "web"),
    ]
    ns = config.get("Namespace", "", "web")
    assert ns is not None and ns.kind == "Namespace"
    assert config.get("Gateway", "nowhere", "web") is None
    assert [s.meta.name for s in config.services()] == ["web"]
    assert [n.meta.name for n in config.namespaces()] == ["web"]


def test_istio_order_is_creation_time_then_name_then_namespace() -> None:
    ts = ", creationTimestamp: '{}'".format
    config = build_config_set(
        files(
            a_yaml="---\n".join(
                [
                    gateway("zeta", "a", ts("2024-01-01T00:00:00Z")),
                    gateway("alpha", "b", ts("2024-06-01T00:00:00Z")),
                    gateway("beta", "b"),  # no timestamp: before any that has one
                    gateway("beta", "a"),
                    gateway("mid", "a", ts("2024-03-01T00:00:00Z")),
                ]
            )
        )
    )
    order = [(g.meta.namespace, g.meta.name) for g in config.istio("Gateway")]
    assert order == [("a", "beta"), ("b", "beta"), ("a", "zeta"), ("a", "mid"), ("b", "alpha")]


def test_unquoted_creation_timestamps_sort_too() -> None:
    config = build_config_set(
        files(
            a_yaml=gateway("late", extra_meta=", creationTimestamp: 2024-02-01T00:00:00Z")
            + "---\n"
            + gateway("early", extra_meta=", creationTimestamp: 2023-02-01T00:00:00Z")
        )
    )
    assert config.errors == ()
    assert [g.meta.name for g in config.istio("Gateway")] == ["early", "late"]


def test_duplicates_are_reported_and_the_first_wins() -> None:
    config = build_config_set(
        files(
            b_yaml=virtual_service("web", timeout="2s"),
            a_yaml=virtual_service("web", timeout="1s")
            + "---\n"
            + virtual_service("web", timeout="3s"),
        )
    )
    assert vs_timeout(config, "web") == 1  # a.yaml document 0: files are read in name order
    assert len(config.errors) == 2
    second, third = config.errors
    assert (second.file, second.document) == ("a.yaml", 1)
    assert (third.file, third.document) == ("b.yaml", 0)
    for error in config.errors:
        assert (error.kind, error.namespace, error.name) == ("VirtualService", "default", "web")
        assert "duplicate VirtualService/default/web" in error.message
        assert "the copy in force is in a.yaml document 0" in error.message


# --- the last valid version stays in force ----------------------------------------------


def test_an_object_that_becomes_invalid_keeps_its_last_valid_version() -> None:
    v1 = build_config_set(
        files(vs_yaml=virtual_service("web", timeout="7s") + "---\n" + gateway("gw"))
    )
    assert v1.errors == ()
    assert vs_timeout(v1, "web") == 7

    broken = virtual_service("web", timeout="7s", extra="    bogusField: 1\n")
    v2 = build_config_set(files(vs_yaml=broken + "---\n" + gateway("gw2")), previous=v1)

    assert vs_timeout(v2, "web") == 7  # the previous valid object is still there
    assert v2.get("VirtualService", "default", "web") is v1.get("VirtualService", "default", "web")
    # the file's other objects follow the new version
    assert v2.get("Gateway", "default", "gw") is None
    assert v2.get("Gateway", "default", "gw2") is not None
    (error,) = v2.errors
    assert (error.file, error.document, error.kind, error.namespace, error.name) == (
        "vs.yaml",
        0,
        "VirtualService",
        "default",
        "web",
    )
    assert error.field == "spec.http[0].bogusField"
    assert error.message.endswith("(the last valid version stays in force)")

    # still broken on the next rebuild: still kept, from the ConfigSet that kept it
    v3 = build_config_set(files(vs_yaml=broken), previous=v2)
    assert vs_timeout(v3, "web") == 7
    assert "stays in force" in v3.errors[0].message

    # fixed: the new version replaces it
    v4 = build_config_set(files(vs_yaml=virtual_service("web", timeout="9s")), previous=v3)
    assert v4.errors == ()
    assert vs_timeout(v4, "web") == 9


def test_an_object_that_was_never_valid_is_simply_missing() -> None:
    broken = virtual_service("web", extra="    bogusField: 1\n")
    config = build_config_set(
        files(vs_yaml=broken), previous=build_config_set(files(x_yaml=gateway("gw")))
    )
    assert config.get("VirtualService", "default", "web") is None
    (error,) = config.errors
    assert "stays in force" not in error.message


def test_fallback_finds_an_object_whose_namespace_was_defaulted() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    v1 = build_config_set(files(svc_yaml=text))
    v2 = build_config_set(files(svc_yaml=text.replace("port: 80", "port: 99999")), previous=v1)
    service = v2.get("Service", "default", "web")
    assert service is not None and service is v1.get("Service", "default", "web")
    assert v2.errors[0].field == "spec.ports[0].port"
    assert "stays in force" in v2.errors[0].message


def test_an_unreadable_file_keeps_all_its_previous_objects() -> None:
    good = virtual_service("web") + "---\n" + gateway("gw")
    v1 = build_config_set(files(a_yaml=good, b_yaml=gateway("other")))
    assert len(v1.objects) == 3

    v2 = build_config_set(
        files(a_yaml=good + "---\nkind: [unclosed\n", b_yaml=gateway("other2")), previous=v1
    )
    assert v2.get("VirtualService", "default", "web") is v1.get("VirtualService", "default", "web")
    assert v2.get("Gateway", "default", "gw") is v1.get("Gateway", "default", "gw")
    # the readable file is taken as it is now
    assert v2.get("Gateway", "default", "other") is None
    assert v2.get("Gateway", "default", "other2") is not None
    (error,) = v2.errors
    assert error.file == "a.yaml"
    assert error.document is None
    assert error.message.startswith("not valid YAML")


def test_a_copy_elsewhere_does_not_take_over_while_the_serving_file_is_broken() -> None:
    v1 = build_config_set(files(a_yaml=virtual_service("web", timeout="1s")))
    v2 = build_config_set(
        files(a_yaml="kind: [unclosed\n", b_yaml=virtual_service("web", timeout="2s")), previous=v1
    )
    assert vs_timeout(v2, "web") == 1  # a.yaml's last valid version
    assert sorted(e.file for e in v2.errors if e.file) == ["a.yaml", "b.yaml"]
    (duplicate,) = [e for e in v2.errors if e.file == "b.yaml"]
    assert "the copy in force is in a.yaml" in duplicate.message
    # Once a.yaml is gone, b.yaml's copy is the only one: it takes over.
    v3 = build_config_set(files(b_yaml=virtual_service("web", timeout="2s")), previous=v2)
    assert vs_timeout(v3, "web") == 2
    assert v3.errors == ()


def test_a_stray_copy_never_replaces_the_object_in_force() -> None:
    """Found as a user would: a copy of a working object pasted into another file (one
    that sorts first) used to replace it."""
    v1 = build_config_set(files(m_yaml=virtual_service("web", timeout="1s")))
    v2 = build_config_set(
        files(
            m_yaml=virtual_service("web", timeout="1s"),
            a_yaml=virtual_service("web", timeout="9s"),
        ),
        previous=v1,
    )
    assert vs_timeout(v2, "web") == 1
    (error,) = v2.errors
    assert (error.file, error.document, error.kind, error.name) == (
        "a.yaml",
        0,
        "VirtualService",
        "web",
    )
    assert "the copy in force is in m.yaml document 0" in error.message
    # Editing the object in its own file still takes effect.
    v3 = build_config_set(
        files(
            m_yaml=virtual_service("web", timeout="2s"),
            a_yaml=virtual_service("web", timeout="9s"),
        ),
        previous=v2,
    )
    assert vs_timeout(v3, "web") == 2


def test_a_deleted_file_takes_its_objects_with_it() -> None:
    v1 = build_config_set(files(a_yaml=virtual_service("web"), b_yaml=gateway("gw")))
    v2 = build_config_set(files(b_yaml=gateway("gw")), previous=v1)
    assert v2.get("VirtualService", "default", "web") is None
    assert list(v2.objects) == [ConfigKey("Gateway", "default", "gw")]
    assert v2.errors == ()


def test_a_document_removed_from_a_file_disappears() -> None:
    v1 = build_config_set(files(a_yaml=virtual_service("web") + "---\n" + gateway("gw")))
    v2 = build_config_set(files(a_yaml=gateway("gw")), previous=v1)
    assert v2.get("VirtualService", "default", "web") is None


# --- references -------------------------------------------------------------------------


def test_resolve_gateway_ref() -> None:
    assert resolve_gateway_ref("mesh", "team-a") == "mesh"
    assert resolve_gateway_ref("gw", "team-a") == "team-a/gw"
    assert resolve_gateway_ref("./gw", "team-a") == "team-a/gw"
    assert resolve_gateway_ref("istio-system/gw", "team-a") == "istio-system/gw"
    assert resolve_gateway_ref("gw.istio-system.svc.cluster.local", "team-a") == "istio-system/gw"
    assert gateway_refs([], "team-a") == ["mesh"]
    assert gateway_refs(["gw", "mesh"], "team-a") == ["team-a/gw", "mesh"]


def test_a_virtual_service_naming_a_missing_gateway_is_reported_with_the_field() -> None:
    vs = virtual_service(
        "web",
        "team-a",
        gateways="[mesh, gw, ./gw, shared/edge, missing, shared/gw]",
        extra="""\
  - match:
    - uri: {prefix: /a}
      gateways: [mesh, edge, shared/edge]
    - uri: {prefix: /b}
      gateways: [gw]
    route: [{destination: {host: web}}]
  tcp:
  - match: [{gateways: [nope]}]
    route: [{destination: {host: web}}]
""",
    )
    config = build_config_set(
        files(gw_yaml=gateway("gw", "team-a") + "---\n" + gateway("edge", "shared"), vs_yaml=vs)
    )

    # the VirtualService itself is valid and served; only its dangling references are errors
    assert config.get("VirtualService", "team-a", "web") is not None
    located = sorted((e.field, e.message) for e in config.errors)
    assert located == [
        ("spec.gateways[4]", "gateway 'team-a/missing' does not exist"),
        # `gw` in a VirtualService of team-a is team-a/gw, not shared/gw
        ("spec.gateways[5]", "gateway 'shared/gw' does not exist"),
        # a short name in a match resolves in the VirtualService's namespace too
        ("spec.http[1].match[0].gateways[1]", "gateway 'team-a/edge' does not exist"),
        ("spec.tcp[0].match[0].gateways[0]", "gateway 'team-a/nope' does not exist"),
    ]
    for error in config.errors:
        assert (error.file, error.document, error.kind, error.namespace, error.name) == (
            "vs.yaml",
            0,
            "VirtualService",
            "team-a",
            "web",
        )
        assert error.severity == "error"


def test_mesh_never_errors_and_no_gateways_means_mesh() -> None:
    config = build_config_set(
        files(
            a_yaml=virtual_service("a", gateways="[mesh]")
            + "---\n"
            + virtual_service(
                "b",
                extra="  - match: [{gateways: [mesh]}]\n    route: [{destination: {host: web}}]\n",
            )
        )
    )
    assert config.errors == ()


def test_a_reference_error_goes_away_when_the_gateway_appears() -> None:
    vs = virtual_service("web", gateways="[gw]")
    v1 = build_config_set(files(vs_yaml=vs))
    assert [e.field for e in v1.errors] == ["spec.gateways[0]"]
    v2 = build_config_set(files(vs_yaml=vs, gw_yaml=gateway("gw")), previous=v1)
    assert v2.errors == ()


def test_has_errors_ignores_warnings() -> None:
    assert not ConfigSet(errors=(ConfigError("hm", severity="warning"),)).has_errors
    assert ConfigSet(errors=(ConfigError("bad"),)).has_errors
