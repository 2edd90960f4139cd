"""Gateway credentials: the Kubernetes Secrets a `credentialName` names -> SDS secrets.

Istio's rules. `credentialName: foo` is served as SDS `kubernetes://foo` (certificate
and key); the CA that MUTUAL checks client certificates with is `kubernetes://foo-cacert`,
from a Secret `foo-cacert` when there is one, else from `foo` itself. Both layouts are
read: kubernetes.io/tls (`tls.crt`, `tls.key`, `ca.crt`, `ca.crl`) and generic (`cert`,
`key`, `cacert`, `crl`), whatever the Secret's `type` says. A gateway proxy reads Secrets
from its own namespace only, wherever the Gateway resource lives: a Secret of the same
name elsewhere is never used (it belongs to someone else).
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.model.configset import ConfigSet
from pilotfish.model.objects import Secret
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.pem import ca_problem, certificate_problem, crl_problem, key_problem

SDS_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
CERT_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))
CA_KEYS = ("ca.crt", "cacert")
CRL_KEYS = ("ca.crl", "crl")


def certificate_sds_name(credential: str) -> str:
    return f"{SDS_PREFIX}{credential}"


def ca_sds_name(credential: str) -> str:
    return f"{SDS_PREFIX}{credential}{CA_SUFFIX}"


@dataclass(frozen=True)
class Unusable:
    """Why a credential cannot be served; names the Secret, never quotes its data."""

    reason: str


class Credentials:
    """The credentials one gateway proxy may use: Secrets in its own namespace, checked.

    A Secret whose content is at fault is also reported on the Secret itself (once, however
    many servers use it); the caller reports the server it has to leave out.
    """

    def __init__(self, config: ConfigSet, namespace: str, diag: Diagnostics) -> None:
        self._config = config
        self.namespace = namespace
        self._diag = diag

    def certificate(self, credential: str) -> ir.CertificateSecret | Unusable:
        secret = self._config.secret(self.namespace, credential)
        if secret is None:
            return Unusable(self._missing(credential))
        pair = next((p for p in CERT_KEYS if p[0] in secret.data and p[1] in secret.data), None)
        if pair is None:
            return self._bad(
                secret,
                "data",
                "has neither tls.crt and tls.key nor cert and key "
                f"(its keys: {', '.join(sorted(secret.data)) or 'none'})",
            )
        cert_key, key_key = pair
        chain, key = secret.data[cert_key], secret.data[key_key]
        if problem := certificate_problem(chain):
            return self._bad(secret, f"data.{cert_key}", f"{cert_key} {problem}")
        if problem := key_problem(chain, key):
            return self._bad(secret, f"data.{key_key}", f"{key_key} {problem}")
        return ir.CertificateSecret(certificate_sds_name(credential), chain, key)

    def ca(self, credential: str) -> ir.ValidationSecret | Unusable:
        """The CA (and CRL) for `credential`: Secret `<credential>-cacert`, else its own."""
        secret = self._config.secret(self.namespace, f"{credential}{CA_SUFFIX}")
        secret = secret or self._config.secret(self.namespace, credential)
        if secret is None:
            return Unusable(self._missing(f"{credential}{CA_SUFFIX}", also=credential))
        ca_key = next((k for k in CA_KEYS if k in secret.data), None)
        if ca_key is None:
            return self._bad(
                secret,
                "data",
                "has no ca.crt or cacert: client certificates cannot be checked "
                f"(its keys: {', '.join(sorted(secret.data)) or 'none'})",
            )
        if problem := ca_problem(secret.data[ca_key]):
            return self._bad(secret, f"data.{ca_key}", f"{ca_key} {problem}")
        crl_key = next((k for k in CRL_KEYS if k in secret.data), None)
        crl = secret.data[crl_key] if crl_key else b""
        if crl_key and (problem := crl_problem(crl)):
            return self._bad(secret, f"data.{crl_key}", f"{crl_key} {problem}")
        return ir.ValidationSecret(ca_sds_name(credential), secret.data[ca_key], crl)

    def _missing(self, name: str, also: str | None = None) -> str:
        names = f"{self.namespace}/{name}" + (f" (nor {self.namespace}/{also})" if also else "")
        message = (
            f"Secret {names} does not exist: a gateway reads credentials only from "
            f"its own namespace ({self.namespace})"
        )
        elsewhere = sorted(
            s.meta.namespace
            for s in self._config.of_kind("Secret")
            if s.meta.name in (name, also) and s.meta.namespace != self.namespace
        )
        if elsewhere:
            message += f"; the one in {', '.join(dict.fromkeys(elsewhere))} is not used"
        return message

    def _bad(self, secret: Secret, field: str, problem: str) -> Unusable:
        self._diag.error(secret, field, f"{problem}: gateway servers using it are left out")
        return Unusable(f"Secret {secret.meta.namespace}/{secret.meta.name}: {problem}")
