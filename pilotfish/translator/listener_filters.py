"""The inspectors a listener's filter chains need, and on which destination ports.

A chain matching on SNI or on TLS needs tls_inspector (it reads the ClientHello); one
matching plaintext HTTP by ALPN (`http/1.1`, `h2c`) needs http_inspector. As Istio, an
inspector runs only where some chain needs it: inspecting a connection of a
server-first protocol would wait for bytes that never come. Chains that match a
destination port decide for that port; the others for every other port.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pilotfish.translator import ir

PLAINTEXT_HTTP_ALPN = frozenset({"http/1.0", "http/1.1", "h2c"})

_ORDER: tuple[ir.ListenerFilterKind, ...] = ("tls_inspector", "http_inspector")  # TLS first


def chain_needs(match: ir.ChainMatch) -> set[ir.ListenerFilterKind]:
    needs: set[ir.ListenerFilterKind] = set()
    tls = match.transport_protocol == "tls"
    if tls or match.server_names:
        needs.add("tls_inspector")
    if not tls and PLAINTEXT_HTTP_ALPN & set(match.application_protocols):
        needs.add("http_inspector")
    if match.transport_protocol != "raw_buffer" and (
        set(match.application_protocols) - PLAINTEXT_HTTP_ALPN
    ):
        needs.add("tls_inspector")  # a TLS ALPN (h2, istio-peer-exchange): from the ClientHello
    return needs


def inspectors(chains: Iterable[ir.FilterChain]) -> tuple[ir.ListenerFilter, ...]:
    by_port: dict[int, set[ir.ListenerFilterKind]] = defaultdict(set)  # 0: any other port
    for chain in chains:
        by_port[chain.match.destination_port or 0] |= chain_needs(chain.match)
    out = []
    for kind in _ORDER:
        if not any(kind in needs for needs in by_port.values()):
            continue
        if kind in by_port.get(0, set()):
            skip = tuple(sorted(p for p, needs in by_port.items() if p and kind not in needs))
            out.append(ir.ListenerFilter(kind, except_ports=skip))
        else:
            only = tuple(sorted(p for p, needs in by_port.items() if kind in needs))
            out.append(ir.ListenerFilter(kind, only_ports=only))
    return tuple(out)
