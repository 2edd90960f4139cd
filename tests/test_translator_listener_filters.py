"""Which inspectors a listener's chains need, and on which destination ports (as Istio)."""

from __future__ import annotations

from pilotfish.translator import ir
from pilotfish.translator.listener_filters import inspectors


def chain(**match: object) -> ir.TcpFilterChain:
    return ir.TcpFilterChain("s", (ir.WeightedCluster("c", 0),), ir.ChainMatch(**match))  # type: ignore[arg-type]


def test_no_chain_matching_on_protocol_needs_no_inspector() -> None:
    assert inspectors([chain(), chain(destination_port=80)]) == ()


def test_sni_on_a_gateway_listener_needs_tls_inspector_everywhere() -> None:
    assert inspectors([chain(server_names=("a.example.com",)), chain()]) == (
        ir.ListenerFilter("tls_inspector"),
    )


def test_inbound_ports_get_the_inspectors_their_chains_need() -> None:
    found = inspectors(
        [
            chain(
                destination_port=9080,
                transport_protocol="raw_buffer",
                application_protocols=("http/1.1", "h2c"),
            ),
            chain(destination_port=9080, transport_protocol="tls"),
            chain(destination_port=3306),
            chain(destination_port=8443, transport_protocol="tls", application_protocols=("h2",)),
        ]
    )
    assert found == (
        ir.ListenerFilter("tls_inspector", only_ports=(8443, 9080)),
        ir.ListenerFilter("http_inspector", only_ports=(9080,)),
    )


def test_a_port_less_chain_needing_one_enables_it_except_where_ports_say_no() -> None:
    # The passthrough chains (no port) sniff; a server-first port (3306) must not wait.
    found = inspectors(
        [
            chain(transport_protocol="tls"),
            chain(transport_protocol="raw_buffer", application_protocols=("http/1.1",)),
            chain(destination_port=3306),
            chain(destination_port=9080, transport_protocol="tls"),
        ]
    )
    assert found == (
        ir.ListenerFilter("tls_inspector", except_ports=(3306,)),
        ir.ListenerFilter("http_inspector", except_ports=(3306, 9080)),
    )


def test_a_tls_alpn_needs_tls_inspector() -> None:
    assert inspectors([chain(application_protocols=("h2",))]) == (
        ir.ListenerFilter("tls_inspector"),
    )
