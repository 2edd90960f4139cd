"""xDS serving: per-proxy snapshots and the ADS protocol. Knows nothing about Istio."""

from pilotfish.xds.ads import AdsServer
from pilotfish.xds.cache import InconsistentSnapshotError, SnapshotCache, VersionedSnapshot
from pilotfish.xds.grpc_server import GrpcBindError, start_grpc_server
from pilotfish.xds.snapshot import Snapshot
from pilotfish.xds.status import NackInfo, ProxySyncStatus, SyncStatus, TypeSyncStatus

__all__ = [
    "AdsServer",
    "GrpcBindError",
    "InconsistentSnapshotError",
    "NackInfo",
    "ProxySyncStatus",
    "Snapshot",
    "SnapshotCache",
    "SyncStatus",
    "TypeSyncStatus",
    "VersionedSnapshot",
    "start_grpc_server",
]
