"""The Host headers a sidecar's outbound virtual host answers to, as Istio generates them.

Istio (pilot/pkg/networking/core/httproute.go) gives a service's virtual host, for Envoy
sidecars:
- the FQDN, and the absolute FQDN with a trailing dot (`reviews.shop.svc.cluster.local.`);
- for a Kubernetes service seen from a proxy whose DNS domain is `<ns>.svc.<suffix>` (our
  node IDs'), the short forms: `reviews`, `reviews.shop.svc`, `reviews.shop` from the same
  namespace, `reviews.shop` and `reviews.shop.svc` from another;
- for a headless Kubernetes service, each of those again under `*.` (pods by name);
- the service's cluster IP(s), IPv6 in brackets.
No `:<port>` forms: Envoy sidecars get `ignore_port_in_host_matching` instead, as Istio
has done since its proxies stopped needing them.

Domains must be unique within a route configuration (Envoy refuses duplicates): the
first virtual host to claim a domain keeps it, and a short form that is itself the FQDN
of another service on the port never shadows that service (Istio's dedupeDomains).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pilotfish.translator.hosts import DEFAULT_DOMAIN_SUFFIX, is_ip

UNSPECIFIED_IPS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class ServiceDomains:
    """The domains of one service's virtual host, and which of them are short forms."""

    domains: tuple[str, ...]
    short_forms: frozenset[str] = field(default_factory=frozenset)


def service_domains(
    hostname: str,
    proxy_namespace: str,
    addresses: Iterable[str] = (),
    *,
    kubernetes: bool = True,
    headless: bool = False,
    aliases: Iterable[str] = (),
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
) -> ServiceDomains:
    """`aliases`: the hosts of ExternalName Services that name this one (their own FQDN
    and short forms follow the service's, as Istio adds them)."""
    domains: list[str] = []
    short: list[str] = []
    for name, is_kube in ((hostname, kubernetes), *((a, True) for a in aliases)):
        forms = _short_forms(name, proxy_namespace, domain_suffix) if is_kube else []
        absolute = [] if is_ip(name) else [name + "."]
        domains += [name, *absolute, *forms]
        short += forms
    if headless and kubernetes:
        domains += [f"*.{d}" for d in domains]
    domains += [_ip_domain(a) for a in addresses if a and a not in UNSPECIFIED_IPS]
    return ServiceDomains(tuple(domains), frozenset(short))


def _short_forms(hostname: str, proxy_namespace: str, domain_suffix: str) -> list[str]:
    """`name`, `name.ns`, `name.ns.svc` as a pod in `proxy_namespace` may write them."""
    tail = f".svc.{domain_suffix}"
    if not hostname.endswith(tail):
        return []  # not a Kubernetes service name: expanding it could shadow another host
    name, dot, namespace = hostname.removesuffix(tail).partition(".")
    if not dot or not name or not namespace or "." in namespace:
        return []
    if namespace == proxy_namespace:
        return [name, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc"]


class DomainClaims:
    """Hands out domains within one route configuration, each at most once."""

    def __init__(self, fqdns: Iterable[str] = ()) -> None:
        # The FQDNs of every service on the route configuration: a short form never
        # takes one of them from its service.
        self._fqdns = frozenset(d.lower() for d in fqdns)
        self._claimed: set[str] = set()

    def claim(self, wanted: ServiceDomains | Sequence[str]) -> tuple[str, ...]:
        """The domains of `wanted` nobody has claimed yet (now claimed), in order."""
        if isinstance(wanted, ServiceDomains):
            domains, short = wanted.domains, wanted.short_forms
        else:
            domains, short = tuple(wanted), frozenset()
        kept = []
        for domain in domains:
            key = domain.lower()
            if key in self._claimed or (domain in short and key in self._fqdns):
                continue
            self._claimed.add(key)
            kept.append(domain)
        return tuple(kept)


def _ip_domain(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
