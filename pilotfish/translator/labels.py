"""Kubernetes label selection, the one rule every selector here follows."""

from __future__ import annotations

from collections.abc import Mapping


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every key/value of `selector` is among `labels`; an empty selector selects all
    (Gateways and DestinationRule subsets; callers that need a non-empty one say so)."""
    return all(labels.get(k) == v for k, v in selector.items())
