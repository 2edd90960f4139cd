"""virtualOutbound and the fixed outbound clusters, as Istio builds them for sidecars.

Istio's init container redirects the workload's outbound TCP to 15001, where
`virtualOutbound` (use_original_dst) hands each connection to the listener of its
original destination (`<cluster IP>_<port>`, `0.0.0.0_<port>`). Connections no listener
takes stay on it: a chain blackholes those addressed to 15001 itself (they would loop),
the catch-all chain sends the rest to `PassthroughCluster` (the original destination,
outboundTrafficPolicy ALLOW_ANY) or `BlackHoleCluster` (REGISTRY_ONLY). The same
catch-all ends every per-port outbound listener whose chains do not take a connection.
"""

from __future__ import annotations

from pilotfish.translator import ir
from pilotfish.translator.cluster_names import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER
from pilotfish.translator.sidecar_scope import OutboundPolicy

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_OUTBOUND_PORT = 15001  # Istio's proxyListenPort, where iptables redirects to
WILDCARD = "0.0.0.0"
BLACKHOLE_CHAIN = "virtualOutbound-blackhole"
CATCH_ALL_CHAIN = "virtualOutbound-catchall-tcp"
PASSTHROUGH_CHAIN = "PassthroughFilterChain"  # the fallback chain of a per-port listener

# Istio's passthrough cluster: idle upstream HTTP connections closed after 5 minutes.
_PASSTHROUGH_IDLE_TIMEOUT_MS = 300_000


def catch_all_cluster(policy: OutboundPolicy) -> str:
    """Where traffic to no known service goes."""
    return PASSTHROUGH_CLUSTER if policy == "ALLOW_ANY" else BLACKHOLE_CLUSTER


def catch_all_chain(policy: OutboundPolicy, name: str) -> ir.TcpFilterChain:
    cluster = catch_all_cluster(policy)
    return ir.TcpFilterChain(cluster, (ir.WeightedCluster(cluster, 0),), name=name)


def virtual_outbound(policy: OutboundPolicy) -> ir.Listener:
    blackhole = ir.TcpFilterChain(
        BLACKHOLE_CLUSTER,
        (ir.WeightedCluster(BLACKHOLE_CLUSTER, 0),),
        # Sent to 15001 itself, not redirected there: passing it through would loop.
        ir.ChainMatch(destination_port=VIRTUAL_OUTBOUND_PORT),
        name=BLACKHOLE_CHAIN,
    )
    return ir.Listener(
        VIRTUAL_OUTBOUND,
        WILDCARD,
        VIRTUAL_OUTBOUND_PORT,
        (blackhole, catch_all_chain(policy, CATCH_ALL_CHAIN)),
        use_original_dst=True,
        traffic_direction="OUTBOUND",
    )


def fixed_clusters(connect_timeout_ms: int) -> tuple[ir.Cluster, ...]:
    """PassthroughCluster (to the original destination, HTTP as the client spoke it) and
    BlackHoleCluster (no endpoints: connections are closed), as Istio always sends both."""
    return (
        ir.Cluster(
            BLACKHOLE_CLUSTER,
            connect_timeout_ms=connect_timeout_ms,
            lb_policy="ROUND_ROBIN",
            discovery="STATIC",
        ),
        ir.Cluster(
            PASSTHROUGH_CLUSTER,
            connect_timeout_ms=connect_timeout_ms,
            lb_policy="CLUSTER_PROVIDED",
            discovery="ORIGINAL_DST",
            use_downstream_protocol=True,
            idle_timeout_ms=_PASSTHROUGH_IDLE_TIMEOUT_MS,
        ),
    )
