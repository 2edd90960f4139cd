"""pilotfish.translator.hosts: host names compared the way Istio compares them."""

from __future__ import annotations

import pytest

from pilotfish.translator.hosts import fqdn, intersect, is_wildcard, matches, strip_namespace


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("httpbin", "default", "httpbin.default.svc.cluster.local"),
        ("HttpBin", "team-a", "httpbin.team-a.svc.cluster.local"),
        ("httpbin.other", "default", "httpbin.other"),  # a dot: taken as written
        ("httpbin.other.svc.cluster.local", "default", "httpbin.other.svc.cluster.local"),
        ("Api.Example.COM", "default", "api.example.com"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
    ],
)
def test_fqdn(host: str, namespace: str, expected: str) -> None:
    assert fqdn(host, namespace) == expected


def test_fqdn_with_another_domain_suffix() -> None:
    assert fqdn("web", "shop", "corp.internal") == "web.shop.svc.corp.internal"


def test_is_wildcard() -> None:
    assert is_wildcard("*")
    assert is_wildcard("*.a.com")
    assert not is_wildcard("a.com")


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*", "anything.example.com", True),
        ("*", "*.example.com", True),
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),  # the wildcard needs a label
        ("*.example.com", ".example.com", False),
        ("*.example.com", "aexample.com", False),
        ("*.example.com", "*.a.example.com", True),  # a narrower wildcard
        ("*.a.example.com", "*.example.com", False),  # a wider one is not covered
        ("a.example.com", "*.example.com", False),  # a plain host covers no wildcard
        ("a.example.com", "*", False),
    ],
)
def test_matches(pattern: str, host: str, expected: bool) -> None:
    assert matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("*.foo.com", "a.foo.com", "a.foo.com"),
        ("a.foo.com", "*.foo.com", "a.foo.com"),
        ("*", "a.foo.com", "a.foo.com"),
        ("a.foo.com", "*", "a.foo.com"),
        ("*.foo.com", "*.a.foo.com", "*.a.foo.com"),
        ("*.a.foo.com", "*.foo.com", "*.a.foo.com"),
        ("*", "*", "*"),
        ("a.foo.com", "a.foo.com", "a.foo.com"),
        ("a.foo.com", "b.foo.com", None),
        ("*.foo.com", "*.bar.com", None),
        ("*.foo.com", "foo.com", None),
    ],
)
def test_intersect_both_directions(a: str, b: str, expected: str | None) -> None:
    assert intersect(a, b) == expected
    assert intersect(b, a) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.example.com", (None, "a.example.com")),
        ("A.Example.com", (None, "a.example.com")),
        ("team-a/a.example.com", ("team-a", "a.example.com")),
        ("./A.example.com", (".", "a.example.com")),  # resolved by the caller to the gateway's ns
        ("*/a.example.com", (None, "a.example.com")),
        ("*/*", (None, "*")),
        ("team-a/*", ("team-a", "*")),
        ("*", (None, "*")),
    ],
)
def test_strip_namespace(raw: str, expected: tuple[str | None, str]) -> None:
    assert strip_namespace(raw) == expected
