"""Make-before-break between clusters and the route configurations and listeners using them.

A route that points at a cluster Envoy is still warming (its endpoints not yet received)
or has already removed answers 503: Istio's most reported one (istio#23956), seen when a
VirtualService and its DestinationRule's subsets change in one edit. Pushing CDS before
RDS is not enough, since warming takes an EDS round trip. Envoy gives the signal needed:
once started, it holds back the ACK of a CDS response until every cluster it added is
warm (``ClusterManagerImpl::updateClusterCounts``). So, per stream:

- a route configuration or listener whose new version references a cluster the proxy
  has not ACKed in CDS is **held**: the proxy is sent its previous version again (or
  nothing yet, if it never had one) until the ACK of a CDS response that has the cluster;
- a cluster the snapshot dropped is **kept** (CDS is full state: left out is removed)
  while a route configuration or listener the proxy may still run references it and the
  snapshot's version of that resource does not: until the proxy ACKs the versions that
  stopped using it. A reference the snapshot itself still makes keeps nothing: that
  cluster is meant to be gone.

Only what changes is ordered: a resource the proxy already has at the desired version is
never held, whatever it references. Pure functions over ``snapshot.Entry`` values, so the
state-of-the-world stream (``stream.py``) and a delta stream can share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from pilotfish.xds import types
from pilotfish.xds.snapshot import Entry, Snapshot

# The types whose resources route to clusters by name.
ROUTING_TYPES: tuple[str, ...] = (types.LISTENER, types.ROUTE)

Entries = Mapping[str, Entry]


def pending_clusters(clusters: Iterable[str], ready: AbstractSet[str]) -> frozenset[str]:
    """The clusters of ``clusters`` the proxy may not have warm: those not ``ready``."""
    return frozenset(name for name in clusters if name not in ready)


def hold_back(
    desired: Entries, previous: Entries, pending: AbstractSet[str]
) -> tuple[dict[str, Entry], dict[str, frozenset[str]]]:
    """What to send of a routing type, and what is held.

    ``desired``: the snapshot's resources the proxy asked for; ``previous``: the versions
    it was sent; ``pending``: clusters it may not have warm. Returns the content (each
    resource at its desired version, or at its previous one while held; a held resource
    the proxy never had is left out) and the held names with the clusters they wait for.
    """
    content: dict[str, Entry] = {}
    held: dict[str, frozenset[str]] = {}
    for name, entry in desired.items():
        before = previous.get(name)
        if before is not None and before.digest == entry.digest:
            content[name] = entry  # nothing changes, nothing to order
            continue
        waiting = entry.references_among(pending)
        if not waiting:
            content[name] = entry
            continue
        held[name] = frozenset(waiting)
        if before is not None:
            content[name] = before
    return content, held


def kept_clusters(
    removed: Entries,
    in_use: Mapping[str, Mapping[str, Iterable[Entry]]],
    snapshot: Snapshot,
    endpoints_sent: AbstractSet[str],
) -> dict[str, tuple[str, ...]]:
    """Which of the ``removed`` clusters (sent to the proxy, gone from the snapshot) to keep.

    ``in_use``: per routing type, resource name -> the versions of it the proxy may run.
    A cluster is kept while one of them routes to it and the snapshot's version of that
    resource (if any) does not. A kept cluster may still be warming, so its endpoints go
    with it: one whose endpoints were never sent (``endpoints_sent``: EDS names) is not
    kept, since it could only stay warming and hold back Envoy's CDS ACK, and every route
    waiting for one, forever. Returns cluster -> the resources (``rds/<name>``,
    ``lds/<name>``) it is kept for.
    """
    if not removed:
        return {}
    gone = removed.keys()
    users: dict[str, list[str]] = {}
    for type_url, resources in in_use.items():
        for name, versions in resources.items():
            still = frozenset().union(*(v.references_among(gone) for v in versions))
            if not still:
                continue
            wanted = snapshot.entry(type_url, name)
            if wanted is not None:
                still = still - wanted.references_among(still)
            for cluster in still:
                users.setdefault(cluster, []).append(f"{types.short_name(type_url)}/{name}")
    return {
        cluster: tuple(sorted(names))
        for cluster, names in users.items()
        if (eds := removed[cluster].eds_name) is None or eds in endpoints_sent
    }


def kept_endpoints(kept: Iterable[Entry]) -> frozenset[str]:
    """The EDS names the kept clusters need: their last endpoints stay with them."""
    return frozenset(name for entry in kept if (name := entry.eds_name) is not None)
