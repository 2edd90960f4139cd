"""Ingress and IngressClass parse into one shape, whatever the apiVersion."""

from __future__ import annotations

from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import (
    Ingress,
    IngressBackend,
    IngressClass,
    IngressPath,
    IngressRule,
    IngressTLS,
)
from pilotfish.model.parse import parse_document


def parse_one(text: str) -> object:
    parsed = parse_manifest_text(text, "ingress.yaml")
    assert parsed.errors == ()
    (doc,) = parsed.documents
    return parse_document(doc)


def test_v1_ingress() -> None:
    ingress = parse_one(
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: httpbin
  namespace: default
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  ingressClassName: istio
  tls:
  - hosts: [HTTPBIN.example.com]
    secretName: httpbin-credential
  rules:
  - host: httpbin.example.com
    http:
      paths:
      - path: /status/*
        pathType: ImplementationSpecific
        backend: {service: {name: httpbin, port: {number: 8000}}}
      - path: /headers
        pathType: Exact
        backend: {service: {name: httpbin, port: {name: http}}}
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
"""
    )
    assert isinstance(ingress, Ingress)
    assert ingress.class_name == "istio"
    assert ingress.meta.annotations["kubernetes.io/ingress.class"] == "istio"
    assert ingress.rules == (
        IngressRule(
            "httpbin.example.com",
            (
                IngressPath("/status/*", "ImplementationSpecific", IngressBackend("httpbin", 8000)),
                IngressPath("/headers", "Exact", IngressBackend("httpbin", "http")),
            ),
        ),
    )
    assert ingress.tls == (IngressTLS(("httpbin.example.com",), "httpbin-credential"),)
    assert ingress.default_backend == IngressBackend("fallback", 80)


def test_v1beta1_backend_is_read_into_the_v1_shape() -> None:
    ingress = parse_one(
        """
apiVersion: networking.k8s.io/v1beta1
kind: Ingress
metadata: {name: old, namespace: default}
spec:
  backend: {serviceName: fallback, servicePort: 80}
  rules:
  - http:
      paths:
      - path: /x
        backend: {serviceName: httpbin, servicePort: "8000"}
"""
    )
    assert isinstance(ingress, Ingress)
    assert ingress.class_name == ""
    assert ingress.rules == (
        IngressRule(
            "", (IngressPath("/x", "ImplementationSpecific", IngressBackend("httpbin", 8000)),)
        ),
    )
    assert ingress.default_backend == IngressBackend("fallback", 80)


def test_ingress_class_is_cluster_scoped() -> None:
    ingress_class = parse_one(
        """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: istio}
spec: {controller: istio.io/ingress-controller}
"""
    )
    assert isinstance(ingress_class, IngressClass)
    assert ingress_class.controller == "istio.io/ingress-controller"
    assert ingress_class.meta.namespace == ""


def test_bad_path_type_names_the_field() -> None:
    error = parse_one(
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad, namespace: web}
spec:
  rules:
  - http:
      paths:
      - {path: /x, pathType: Regex, backend: {service: {name: a, port: {number: 80}}}}
"""
    )
    assert isinstance(error, ConfigError)
    assert error.field == "spec.rules[0].http.paths[0].pathType"
    assert (error.kind, error.namespace, error.name) == ("Ingress", "web", "bad")


def test_backend_without_a_service_is_an_error() -> None:
    error = parse_one(
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bad, namespace: web}
spec:
  defaultBackend: {resource: {kind: Bucket, name: b}}
"""
    )
    assert isinstance(error, ConfigError)
    assert error.field == "spec.defaultBackend"
