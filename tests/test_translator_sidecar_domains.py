"""The domains of a sidecar's outbound virtual hosts, and their uniqueness per route config."""

from __future__ import annotations

from pilotfish.translator.sidecar_domains import DomainClaims, ServiceDomains, service_domains

REVIEWS = "reviews.shop.svc.cluster.local"


def test_same_namespace_gets_every_short_form_and_the_cluster_ip() -> None:
    found = service_domains(REVIEWS, "shop", ["10.96.0.7"])
    assert found.domains == (
        REVIEWS,
        REVIEWS + ".",
        "reviews",
        "reviews.shop.svc",
        "reviews.shop",
        "10.96.0.7",
    )
    assert found.short_forms == {"reviews", "reviews.shop.svc", "reviews.shop"}


def test_another_namespace_never_gets_the_bare_name() -> None:
    assert service_domains(REVIEWS, "web").domains == (
        REVIEWS,
        REVIEWS + ".",
        "reviews.shop",
        "reviews.shop.svc",
    )


def test_an_external_host_is_not_expanded() -> None:
    found = service_domains("api.example.com", "shop", ["240.0.0.1"], kubernetes=False)
    assert found.domains == ("api.example.com", "api.example.com.", "240.0.0.1")
    # A ServiceEntry host that looks like a Kubernetes name is not expanded either.
    assert service_domains(REVIEWS, "shop", kubernetes=False).domains == (REVIEWS, REVIEWS + ".")


def test_headless_services_also_answer_for_their_pods() -> None:
    found = service_domains(REVIEWS, "web", headless=True)
    assert "*.reviews.shop" in found.domains
    assert "*." + REVIEWS in found.domains


def test_unspecified_and_ipv6_addresses() -> None:
    found = service_domains(REVIEWS, "web", ["0.0.0.0", "fd00::7", "::"])
    assert found.domains[-1] == "[fd00::7]"
    assert "0.0.0.0" not in found.domains and "::" not in found.domains


def test_a_domain_is_claimed_once_per_route_configuration() -> None:
    claims = DomainClaims()
    first = claims.claim(service_domains(REVIEWS, "shop", ["10.96.0.7"]))
    # A VirtualService host and a second service sharing a cluster IP (a misconfiguration
    # Envoy would refuse) lose only the duplicates.
    assert claims.claim(["reviews", "reviews.example.com"]) == ("reviews.example.com",)
    other = claims.claim(service_domains("ratings.shop.svc.cluster.local", "shop", ["10.96.0.7"]))
    assert "10.96.0.7" in first and "10.96.0.7" not in other
    assert claims.claim(["REVIEWS.shop"]) == ()  # compared without case


def test_a_short_form_never_takes_another_services_fqdn() -> None:
    # `foo.com` in namespace `svc`... a service named `foo` in namespace `com` expands to
    # `foo.com`, which is also an external service's FQDN: the external one keeps it.
    kube = service_domains("foo.com.svc.cluster.local", "com")
    assert "foo.com" in kube.short_forms
    claims = DomainClaims(fqdns=["foo.com", "foo.com.svc.cluster.local"])
    assert "foo.com" not in claims.claim(kube)
    assert claims.claim(ServiceDomains(("foo.com",))) == ("foo.com",)
