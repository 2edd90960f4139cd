"""Gateway servers, one kind per module, each owning the filter chains it builds.

servers.py decides what kind a server is (from its protocol and tls mode); `KINDS` is
the one place that maps a kind to its builder: how it shares a listener (merge.py) and
the chains, route configurations, secrets and clusters it brings (`chains_for`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby

from pilotfish.translator.gateway_servers.auto_passthrough import AutoPassthroughServers
from pilotfish.translator.gateway_servers.base import Chain, ChainContext, ServerKindBuilder
from pilotfish.translator.gateway_servers.http import HttpServers
from pilotfish.translator.gateway_servers.https import HttpsServers
from pilotfish.translator.gateway_servers.passthrough import PassthroughServers
from pilotfish.translator.gateway_servers.tcp import TcpServers
from pilotfish.translator.gateway_servers.tls_terminate import TlsTerminateServers
from pilotfish.translator.servers import BoundServer, ServerKind

KINDS: Mapping[ServerKind, ServerKindBuilder] = {
    "http": HttpServers(),
    "https": HttpsServers(),
    "tls": TlsTerminateServers(),
    "passthrough": PassthroughServers(),
    "auto_passthrough": AutoPassthroughServers(),
    "tcp": TcpServers(),
}


def chains_for(servers: Sequence[BoundServer], ctx: ChainContext) -> list[Chain]:
    """The chains of one listener's servers, in their order: each run of one kind is
    built by that kind (plaintext HTTP servers, all of one kind, share one chain)."""
    return [
        chain
        for kind, run in groupby(servers, key=lambda b: b.kind)
        for chain in KINDS[kind].chains(list(run), ctx)
    ]
