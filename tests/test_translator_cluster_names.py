"""Cluster names: the one place they are formatted and read back."""

from __future__ import annotations

import pytest

from pilotfish.translator.cluster_names import ClusterName

HOST = "reviews.default.svc.cluster.local"


def test_outbound_name_and_its_sni_form() -> None:
    name = ClusterName.outbound(9080, HOST, "v1")
    assert str(name) == "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert name.sni == "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
    assert str(ClusterName.outbound(80, "edition.cnn.com")) == "outbound|80||edition.cnn.com"


def test_inbound_name_has_no_subset_or_host() -> None:
    assert str(ClusterName.inbound(8080)) == "inbound|8080||"


@pytest.mark.parametrize(
    "name",
    [
        ClusterName.outbound(9080, HOST, "v1"),
        ClusterName.outbound(443, "httpbin.org"),
        ClusterName.outbound(80, "*.wikipedia.org"),
        ClusterName.inbound(15021),
    ],
)
def test_parse_reads_back_what_was_built(name: ClusterName) -> None:
    assert ClusterName.parse(str(name)) == name
    assert ClusterName.parse_sni(name.sni) == name


@pytest.mark.parametrize(
    "text",
    [
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughCluster",
        "outbound|http|v1|reviews",  # port not a number
        "outbound|80|v1|",  # outbound without a host
        "inbound|80|v1|",  # inbound with a subset
        "inbound|80||reviews",  # inbound with a host
        "sideways|80||reviews",
        "outbound|80|reviews",  # three parts
        "outbound_.80_._.reviews",  # the SNI form is not the cluster form
    ],
)
def test_parse_refuses_other_names(text: str) -> None:
    assert ClusterName.parse(text) is None


def test_parse_sni_refuses_the_cluster_form() -> None:
    assert ClusterName.parse_sni(str(ClusterName.outbound(80, HOST))) is None
