"""Fixtures shared by e2e modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from testsupport.mesh import MeshWorld


@pytest.fixture(scope="module")
def mesh() -> Iterator[MeshWorld]:
    """A mesh world of the module's own (testsupport/mesh): pods are network namespaces
    with Istio's iptables capture; removed after the module, even when tests failed.
    Needs root (CI runs as root): anything else is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.fail("the mesh world needs root (network namespaces, iptables)")
    with MeshWorld() as world:
        yield world
