import pytest

from pilotfish.node_id import NODE_ID_FORM, NodeId, parse_node_id


def test_parses_a_router_id() -> None:
    node = parse_node_id("router~10.0.0.1~gw-7d9.istio-system~istio-system.svc.cluster.local")
    assert node == NodeId(
        type="router",
        ip="10.0.0.1",
        pod_name="gw-7d9",
        namespace="istio-system",
        domain="istio-system.svc.cluster.local",
    )


def test_parses_a_sidecar_id_with_ipv6_and_a_dotted_pod_name() -> None:
    node = parse_node_id("sidecar~fd00::1~web.v1-abc.default~default.svc.cluster.local")
    assert (node.type, node.ip, node.pod_name, node.namespace) == (
        "sidecar",
        "fd00::1",
        "web.v1-abc",  # pod names may hold dots; the namespace is after the last one
        "default",
    )


def test_str_gives_back_the_id() -> None:
    text = "sidecar~10.1.2.3~web-1.default~default.svc.cluster.local"
    assert str(parse_node_id(text)) == text
    assert str(NodeId.for_pod("sidecar", "10.1.2.3", "web-1", "default")) == text


@pytest.mark.parametrize(
    ("node_id", "problem"),
    [
        ("", "expected 4 '~'-separated parts, got 1"),
        ("router~10.0.0.1~gw.ns", "expected 4 '~'-separated parts, got 3"),
        ("router~10.0.0.1~gw.ns~ns.svc.cluster.local~x", "got 5"),
        ("gateway~10.0.0.1~gw.ns~ns.svc.cluster.local", "proxy type 'gateway' is not one of"),
        ("ROUTER~10.0.0.1~gw.ns~ns.svc.cluster.local", "proxy type 'ROUTER'"),
        ("router~10.0.0~gw.ns~ns.svc.cluster.local", "'10.0.0' is not an IP address"),
        ("router~~gw.ns~ns.svc.cluster.local", "'' is not an IP address"),
        ("router~10.0.0.1~gw~ns.svc.cluster.local", "'gw' must be <pod name>.<namespace>"),
        ("router~10.0.0.1~gw.~ns.svc.cluster.local", "must be <pod name>.<namespace>"),
        ("router~10.0.0.1~.ns~ns.svc.cluster.local", "must be <pod name>.<namespace>"),
        ("router~10.0.0.1~Gw.ns~ns.svc.cluster.local", "pod name 'Gw' is not a valid"),
        ("router~10.0.0.1~gw.my_ns~ns.svc.cluster.local", "namespace 'my_ns' is not a valid"),
        ("router~10.0.0.1~gw.ns~", "DNS domain '' is not a DNS name"),
        ("router~10.0.0.1~gw.ns~ns svc", "DNS domain 'ns svc' is not a DNS name"),
    ],
)
def test_malformed_ids_say_what_is_wrong_and_the_form(node_id: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_node_id(node_id)
    message = str(info.value)
    assert problem in message
    assert repr(node_id) in message
    assert NODE_ID_FORM in message
