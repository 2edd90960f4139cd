"""How to reach the API server and what to watch: the Kubernetes source's knobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KubernetesSettings:
    """Settings of `KubernetesSource`; the defaults are what `pilotfish serve --kubernetes` uses.

    kubeconfig: a kubeconfig file; None means in-cluster config when running in a pod
        (KUBERNETES_SERVICE_HOST is set), else $KUBECONFIG or ~/.kube/config.
    context: the kubeconfig context to use (None: its current-context).
    namespaces: watch namespaced kinds only in these namespaces (one watch per namespace
        and kind); None watches all namespaces with one watch per kind.
    secret_namespaces: namespaces whose Secrets (types kubernetes.io/tls and Opaque only)
        are read: where the gateways run. None means the same scope as `namespaces`.
    write_status: write each Istio object's problems to its status.validationMessages.
    page_size: `limit` of each LIST page.
    watch_timeout: `timeoutSeconds` asked of the server for one watch (randomised up to
        twice that, so that many watches do not all reconnect at once); the watch then
        resumes from the last resourceVersion, without a relist.
    resync_interval: relist every kind this often (seconds) and apply the differences, to
        heal anything a watch could have missed; None (the default, as client-go's
        informers) relists only when the API says the resourceVersion is too old (410).
    backoff_initial, backoff_max: the retry delay after a failed LIST or a lost watch
        doubles from backoff_initial up to backoff_max seconds.
    request_timeout: seconds for one discovery, LIST page or status PATCH request.
    """

    kubeconfig: Path | None = None
    context: str | None = None
    namespaces: tuple[str, ...] | None = None
    secret_namespaces: tuple[str, ...] | None = ("istio-system",)
    write_status: bool = False
    page_size: int = 500
    watch_timeout: float = 300.0
    resync_interval: float | None = None
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    request_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if self.namespaces is not None and not self.namespaces:
            raise ValueError("namespaces: give at least one, or None for all")
