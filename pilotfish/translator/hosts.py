"""Host names the way Istio compares them: lowercase, `*` wildcards on the left."""

from __future__ import annotations

import ipaddress

DEFAULT_DOMAIN_SUFFIX = "cluster.local"


def fqdn(host: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """Resolve a short name (no dots) in the namespace of the object that names it.

    `httpbin` named in `default` is `httpbin.default.svc.cluster.local`; anything with a
    dot, and wildcards, are taken as written (as Istio does).
    """
    host = host.lower()
    if "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain_suffix}"


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def matches(pattern: str, host: str) -> bool:
    """Does `pattern` (possibly `*` or `*.suffix`) cover `host` (possibly a wildcard)?"""
    if pattern == "*":
        return True
    if pattern == host:
        return True
    if is_wildcard(pattern):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return False


def intersect(a: str, b: str) -> str | None:
    """The host both cover, or None: `*.foo.com` and `a.foo.com` give `a.foo.com`."""
    if matches(a, b):
        return b
    if matches(b, a):
        return a
    return None


def strip_namespace(host: str) -> tuple[str | None, str]:
    """A Gateway server host `ns/host` as (namespace restriction or None, host).

    `*/host` and a bare `host` admit VirtualServices from any namespace; `./host` is
    resolved by the caller to the Gateway's own namespace.
    """
    if "/" not in host:
        return None, host.lower()
    ns, _, name = host.partition("/")
    return (None if ns == "*" else ns), name.lower()


def is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address (not a name, not a CIDR range)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
