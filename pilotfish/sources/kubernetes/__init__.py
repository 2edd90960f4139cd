"""The Kubernetes API as a config source: list/watch informers, status write-back.

source = KubernetesSource(KubernetesSettings(kubeconfig=path, write_status=True))
await source.start()          # raises KubernetesConfigError without usable settings
await source.wait_synced()    # every kind listed once
config = build_config_set(source.load(), previous)
async for count in source.changes(stop): ...
await source.write_status(problems)
await source.close()
"""

from pilotfish.sources.kubernetes.client import ApiError
from pilotfish.sources.kubernetes.connection import (
    Connection,
    KubernetesConfigError,
    load_connection,
)
from pilotfish.sources.kubernetes.resources import WATCHED, ResourceType
from pilotfish.sources.kubernetes.settings import KubernetesSettings
from pilotfish.sources.kubernetes.source import KubernetesSource
from pilotfish.sources.kubernetes.status import validation_message, validation_messages
from pilotfish.sources.kubernetes.store import document_name

__all__ = [
    "WATCHED",
    "ApiError",
    "Connection",
    "KubernetesConfigError",
    "KubernetesSettings",
    "KubernetesSource",
    "ResourceType",
    "document_name",
    "load_connection",
    "validation_message",
    "validation_messages",
]
