"""Snapshot: naming, hashing, consistency; SnapshotCache: versions and change waits."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from envoy.config.core.v3 import config_source_pb2

from pilotfish.xds import types
from pilotfish.xds.cache import InconsistentSnapshotError, SnapshotCache
from pilotfish.xds.snapshot import Snapshot
from tests.test_xds_fixtures import (
    CLUSTER_NAME,
    QUIET,
    SIDECAR,
    eds_cluster,
    endpoints,
    listener,
    routes,
    run,
    secret,
    snapshot,
)

# --- Snapshot ------------------------------------------------------------------------


def test_of_keys_resources_by_their_names() -> None:
    snap = snapshot()
    assert list(snap.resources[types.CLUSTER]) == [CLUSTER_NAME]
    assert list(snap.resources[types.ENDPOINT]) == [CLUSTER_NAME]  # cluster_name
    assert list(snap.resources[types.LISTENER]) == ["0.0.0.0_8080"]
    assert list(snap.resources[types.ROUTE]) == ["http.8080"]
    assert dict(snap.resources[types.SECRET]) == {}  # every type present, maybe empty


def test_duplicate_names_are_an_error() -> None:
    with pytest.raises(ValueError, match="duplicate cds resource 'a'"):
        Snapshot.of(clusters=[eds_cluster("a"), eds_cluster("a", timeout_s=2)])


def test_key_must_be_the_resource_name() -> None:
    with pytest.raises(ValueError, match="keyed 'x' is named 'a'"):
        Snapshot({types.CLUSTER: {"x": eds_cluster("a")}})


def test_snapshot_is_immutable() -> None:
    snap = snapshot()
    with pytest.raises(AttributeError):
        snap.resources = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.resources[types.CLUSTER] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.resources[types.CLUSTER]["b"] = eds_cluster("b")  # type: ignore[index]


def test_hashes_follow_content_not_construction() -> None:
    a, b = snapshot(), snapshot()
    for type_url in types.PUSH_ORDER:
        assert a.type_hash(type_url) == b.type_hash(type_url)
    c = snapshot(ports=(8000, 8001))
    assert c.type_hash(types.ENDPOINT) != a.type_hash(types.ENDPOINT)
    assert c.type_hash(types.CLUSTER) == a.type_hash(types.CLUSTER)
    assert c.resource_hash(types.ENDPOINT, CLUSTER_NAME) != a.resource_hash(
        types.ENDPOINT, CLUSTER_NAME
    )
    assert a.resource_hash(types.ENDPOINT, "nope") is None
    # Order of the input does not matter: resources are hashed sorted by name.
    one = Snapshot.of(clusters=[eds_cluster("a"), eds_cluster("b")])
    two = Snapshot.of(clusters=[eds_cluster("b"), eds_cluster("a")])
    assert one.type_hash(types.CLUSTER) == two.type_hash(types.CLUSTER)


def test_serialized_bytes_are_what_was_hashed() -> None:
    cluster = eds_cluster("a")
    snap = Snapshot.of(clusters=[cluster])
    cluster.connect_timeout.seconds = 99  # a caller mutating afterwards changes nothing sent
    assert snap.serialized(types.CLUSTER, "a") == eds_cluster("a").SerializeToString(
        deterministic=True
    )


# --- consistency ---------------------------------------------------------------------


def test_consistent_snapshot_has_no_errors() -> None:
    assert snapshot().consistency_errors() == []


def test_eds_cluster_needs_its_endpoints() -> None:
    snap = Snapshot.of(clusters=[eds_cluster("a")])
    assert snap.consistency_errors() == [
        "cluster 'a' (EDS) needs endpoints 'a', which the snapshot does not have"
    ]


def test_eds_service_name_is_what_must_exist() -> None:
    snap = Snapshot.of(clusters=[eds_cluster("a", service_name="svc")], endpoints=[endpoints("a")])
    assert snap.consistency_errors() == [
        "cluster 'a' (EDS) needs endpoints 'svc', which the snapshot does not have"
    ]
    ok = Snapshot.of(clusters=[eds_cluster("a", service_name="svc")], endpoints=[endpoints("svc")])
    assert ok.consistency_errors() == []


def test_listener_needs_its_route_configuration() -> None:
    snap = Snapshot.of(listeners=[listener("l", 8080, "http.8080")])
    assert snap.consistency_errors() == [
        "listener 'l' needs route configuration 'http.8080', which the snapshot does not have"
    ]
    assert (
        Snapshot.of(
            listeners=[listener("l", 8080, "http.8080")], routes=[routes("http.8080", "c")]
        ).consistency_errors()
        == []
    )


def test_route_from_another_config_source_is_not_ours() -> None:
    elsewhere = config_source_pb2.ConfigSource(path_config_source={"path": "/etc/routes.yaml"})
    snap = Snapshot.of(listeners=[listener("l", 8080, "http.8080", config=elsewhere)])
    assert snap.consistency_errors() == []


def test_listener_tls_needs_its_certificate_secret() -> None:
    snap = Snapshot.of(
        listeners=[listener("l", 443, "r", cert_secret="kubernetes://cred")],
        routes=[routes("r", "c")],
    )
    assert snap.consistency_errors() == [
        "listener 'l' refers to secret 'kubernetes://cred', which the snapshot does not have"
    ]
    snap = Snapshot.of(
        listeners=[listener("l", 443, "r", cert_secret="kubernetes://cred")],
        routes=[routes("r", "c")],
        secrets=[secret("kubernetes://cred")],
    )
    assert snap.consistency_errors() == []


@pytest.mark.parametrize("kind", ["cert_secret", "ca_secret", "combined_ca_secret"])
def test_cluster_tls_needs_its_secrets(kind: str) -> None:
    cluster = eds_cluster("a", **{kind: "kubernetes://x-cacert"})  # type: ignore[arg-type]
    snap = Snapshot.of(clusters=[cluster], endpoints=[endpoints("a")])
    assert snap.consistency_errors() == [
        "cluster 'a' refers to secret 'kubernetes://x-cacert', which the snapshot does not have"
    ]
    snap = Snapshot.of(
        clusters=[cluster], endpoints=[endpoints("a")], secrets=[secret("kubernetes://x-cacert")]
    )
    assert snap.consistency_errors() == []


def test_every_missing_reference_is_reported() -> None:
    snap = Snapshot.of(
        clusters=[eds_cluster("a"), eds_cluster("b", cert_secret="s")],
        listeners=[listener("l", 80, "r1"), listener("m", 81, "r2")],
    )
    assert len(snap.consistency_errors()) == 5


# --- cache ---------------------------------------------------------------------------

VERSION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z/\d+$")


def test_versions_change_only_with_content() -> None:
    cache = SnapshotCache()
    first = cache.set_snapshot(SIDECAR, snapshot())
    assert all(VERSION.match(first.version(t)) for t in types.PUSH_ORDER)
    assert len({first.version(t) for t in types.PUSH_ORDER}) == 5

    same = cache.set_snapshot(SIDECAR, snapshot())  # equal content, new objects
    assert same.versions == first.versions
    assert same.generation == first.generation

    changed = cache.set_snapshot(SIDECAR, snapshot(ports=(8000, 9000)))
    assert changed.generation > first.generation
    for type_url in types.PUSH_ORDER:
        if type_url == types.ENDPOINT:
            assert changed.version(type_url) != first.version(type_url)
        else:
            assert changed.version(type_url) == first.version(type_url)


def test_versions_are_per_node() -> None:
    cache = SnapshotCache()
    a = cache.set_snapshot("a", snapshot())
    b = cache.set_snapshot("b", snapshot())
    assert a.version(types.CLUSTER) != b.version(types.CLUSTER)
    assert cache.get("a") is a
    cache.clear("a")
    assert cache.get("a") is None
    assert cache.node_ids() == ["b"]


def test_versions_unique_across_restarts() -> None:
    # Two caches as two control-plane lifetimes, even with a clock that stands still:
    # the restarted one must not reuse a version the proxy still holds.
    frozen = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    before = SnapshotCache(clock=lambda: frozen)
    after = SnapshotCache(clock=lambda: frozen)
    assert before.boot_stamp != after.boot_stamp
    v1 = before.set_snapshot(SIDECAR, snapshot()).versions
    v2 = after.set_snapshot(SIDECAR, snapshot(prefix="/other")).versions
    assert not set(v1.values()) & set(v2.values())
    assert SnapshotCache().boot_stamp != SnapshotCache().boot_stamp


def test_inconsistent_snapshot_is_refused_unless_unchecked() -> None:
    cache = SnapshotCache()
    broken = Snapshot.of(clusters=[eds_cluster("a")])
    with pytest.raises(InconsistentSnapshotError, match="needs endpoints 'a'") as info:
        cache.set_snapshot(SIDECAR, broken)
    assert info.value.node_id == SIDECAR
    assert cache.get(SIDECAR) is None
    assert cache.set_snapshot(SIDECAR, broken, check=False).snapshot is broken


def test_wait_for_change() -> None:
    async def main() -> None:
        cache = SnapshotCache()
        waiter = asyncio.create_task(cache.wait_for_change(SIDECAR, 0))
        first = cache.set_snapshot(SIDECAR, snapshot())
        assert await waiter is first

        # An unchanged snapshot wakes nobody; a changed one does.
        waiter = asyncio.create_task(cache.wait_for_change(SIDECAR, first.generation))
        cache.set_snapshot(SIDECAR, snapshot())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), QUIET)
        second = cache.set_snapshot(SIDECAR, snapshot(prefix="/x"))
        assert await waiter is second

        # Cleared and set again: generations keep increasing, so waiters still wake.
        waiter = asyncio.create_task(cache.wait_for_change(SIDECAR, second.generation))
        cache.clear(SIDECAR)
        third = cache.set_snapshot(SIDECAR, snapshot())
        assert third.generation > second.generation
        assert await waiter is third
        assert not cache._changed and not cache._waiters  # nothing left behind

    run(main())
