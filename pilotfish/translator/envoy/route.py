"""IR route configurations -> Envoy RouteConfigurations."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities_pb2,
)
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf.wrappers_pb2 import BoolValue, UInt32Value

from pilotfish.translator import ir
from pilotfish.translator.envoy import http_filters
from pilotfish.translator.envoy.common import millis, typed


def route_configuration(spec: ir.RouteConfig) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=spec.name,
        virtual_hosts=[virtual_host(v) for v in spec.virtual_hosts],
        ignore_port_in_host_matching=spec.ignore_port_in_host_matching,
        # Routes may name clusters that are not there yet: 503 for them, not a NACK for all.
        validate_clusters=BoolValue(value=False),
    )


def virtual_host(spec: ir.VirtualHost) -> rc_pb.VirtualHost:
    return rc_pb.VirtualHost(
        name=spec.name,
        domains=list(spec.domains),
        routes=[route(r) for r in spec.routes],
        require_tls=rc_pb.VirtualHost.ALL if spec.require_tls else rc_pb.VirtualHost.NONE,
    )


def route(spec: ir.Route) -> rc_pb.Route:
    out = rc_pb.Route(name=spec.name, match=route_match(spec.match))
    if spec.redirect is not None:
        out.redirect.CopyFrom(redirect_action(spec.redirect))
    elif spec.direct_response is not None:
        out.direct_response.CopyFrom(direct_response_action(spec.direct_response))
    else:
        out.route.CopyFrom(route_action(spec))
    _add_headers(out, spec.headers)
    if spec.fault is not None:
        out.typed_per_filter_config[http_filters.FAULT_FILTER].CopyFrom(
            typed(http_filters.fault(spec.fault))
        )
    if spec.cors is not None:
        origins = [string_matcher(o) for o in spec.cors.allow_origins]
        out.typed_per_filter_config[http_filters.CORS_FILTER].CopyFrom(
            typed(http_filters.cors(spec.cors, origins))
        )
    return out


_REDIRECT_CODES = {
    301: rc_pb.RedirectAction.MOVED_PERMANENTLY,
    302: rc_pb.RedirectAction.FOUND,
    303: rc_pb.RedirectAction.SEE_OTHER,
    307: rc_pb.RedirectAction.TEMPORARY_REDIRECT,
    308: rc_pb.RedirectAction.PERMANENT_REDIRECT,
}


def redirect_action(spec: ir.Redirect) -> rc_pb.RedirectAction:
    out = rc_pb.RedirectAction(host_redirect=spec.host, response_code=_REDIRECT_CODES[spec.code])
    if spec.scheme:  # a oneof: set only when given, the request's scheme is kept otherwise
        out.scheme_redirect = spec.scheme
    if spec.path:
        out.path_redirect = spec.path
    elif spec.prefix:
        out.prefix_rewrite = spec.prefix
    if spec.port is not None:
        out.port_redirect = spec.port
    return out


def direct_response_action(spec: ir.DirectResponse) -> rc_pb.DirectResponseAction:
    out = rc_pb.DirectResponseAction(status=spec.status)
    if spec.body is not None:
        try:
            out.body.inline_string = spec.body.decode()
        except UnicodeDecodeError:
            out.body.inline_bytes = spec.body
    return out


def _header_options(ops: ir.HeaderOperations) -> list[base_pb2.HeaderValueOption]:
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, value=v), append_action=action
        )
        for pairs, action in ((ops.set, overwrite), (ops.add, append))
        for k, v in pairs
    ]


def _add_headers(out: rc_pb.Route | rc_pb.WeightedCluster.ClusterWeight, spec: ir.Headers) -> None:
    out.request_headers_to_add.extend(_header_options(spec.request))
    out.request_headers_to_remove.extend(spec.request.remove)
    out.response_headers_to_add.extend(_header_options(spec.response))
    out.response_headers_to_remove.extend(spec.response.remove)


def route_match(spec: ir.RouteMatch) -> rc_pb.RouteMatch:
    match = rc_pb.RouteMatch(
        headers=[header_matcher(h) for h in spec.headers],
        query_parameters=[
            rc_pb.QueryParameterMatcher(name=q.name, **_query_value(q.match)) for q in spec.query
        ],
    )
    path = spec.path
    if path.kind == "exact":
        match.path = path.value
    elif path.kind == "separated_prefix":
        match.path_separated_prefix = path.value
    elif path.kind == "regex":
        match.safe_regex.CopyFrom(regex(path.value))
    else:
        match.prefix = path.value
    if not spec.case_sensitive:
        match.case_sensitive.CopyFrom(BoolValue(value=False))
    return match


def header_matcher(spec: ir.HeaderMatch) -> rc_pb.HeaderMatcher:
    matcher = rc_pb.HeaderMatcher(name=spec.name, invert_match=spec.invert)
    if spec.match.kind == "present":
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(string_matcher(spec.match))
    return matcher


def _query_value(spec: ir.StringMatch) -> dict[str, object]:
    if spec.kind == "present":
        return {"present_match": True}
    return {"string_match": string_matcher(spec)}


def string_matcher(spec: ir.StringMatch) -> string_pb2.StringMatcher:
    if spec.kind == "exact":
        return string_pb2.StringMatcher(exact=spec.value)
    if spec.kind == "prefix":
        return string_pb2.StringMatcher(prefix=spec.value)
    return string_pb2.StringMatcher(safe_regex=regex(spec.value))


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)  # Envoy's default engine: RE2


def route_action(spec: ir.Route) -> rc_pb.RouteAction:
    action = rc_pb.RouteAction(timeout=millis(spec.timeout_ms))
    if len(spec.clusters) == 1:
        action.cluster = spec.clusters[0].cluster
    else:
        action.weighted_clusters.CopyFrom(
            rc_pb.WeightedCluster(clusters=[_cluster_weight(c) for c in spec.clusters])
        )
    if spec.headers.authority:
        action.host_rewrite_literal = spec.headers.authority
    if spec.rewrite is not None:
        _rewrite(action, spec.rewrite)  # rewrite.authority wins over a set host header
    for mirror in spec.mirrors:
        action.request_mirror_policies.append(
            rc_pb.RouteAction.RequestMirrorPolicy(
                cluster=mirror.cluster,
                runtime_fraction=base_pb2.RuntimeFractionalPercent(
                    default_value=http_filters.million(mirror.per_million)
                ),
                trace_sampled=BoolValue(value=False),
            )
        )
    if spec.retry is not None:
        action.retry_policy.CopyFrom(retry_policy(spec.retry))
    if spec.hash_policy is not None:
        action.hash_policy.append(hash_policy(spec.hash_policy))
    return action


def hash_policy(spec: ir.HashPolicy) -> rc_pb.RouteAction.HashPolicy:
    """A DestinationRule consistentHash key, hashed by Envoy per request at the route."""
    policy = rc_pb.RouteAction.HashPolicy
    if spec.kind == "header":
        return policy(header=policy.Header(header_name=spec.name))
    if spec.kind == "cookie":
        cookie = policy.Cookie(name=spec.name, path=spec.cookie_path)
        if spec.cookie_ttl_ms is not None:
            cookie.ttl.CopyFrom(millis(spec.cookie_ttl_ms))
        return policy(cookie=cookie)
    if spec.kind == "query":
        return policy(query_parameter=policy.QueryParameter(name=spec.name))
    return policy(connection_properties=policy.ConnectionProperties(source_ip=True))


def _cluster_weight(spec: ir.WeightedCluster) -> rc_pb.WeightedCluster.ClusterWeight:
    out = rc_pb.WeightedCluster.ClusterWeight(
        name=spec.cluster, weight=UInt32Value(value=spec.weight)
    )
    _add_headers(out, spec.headers)
    if spec.headers.authority:
        out.host_rewrite_literal = spec.headers.authority
    return out


def _rewrite(action: rc_pb.RouteAction, spec: ir.Rewrite) -> None:
    if spec.prefix is not None:
        action.prefix_rewrite = spec.prefix
    elif spec.regex:
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex(spec.regex), substitution=spec.regex_substitution
            )
        )
    if spec.authority:
        action.host_rewrite_literal = spec.authority


def retry_policy(spec: ir.RetryPolicy) -> rc_pb.RetryPolicy:
    policy = rc_pb.RetryPolicy(
        retry_on=spec.retry_on,
        num_retries=UInt32Value(value=spec.attempts),
        retriable_status_codes=list(spec.retriable_status_codes),
    )
    if spec.retry_other_hosts:
        # Retry elsewhere than the endpoint that just failed, as Istio does.
        policy.retry_host_predicate.append(
            rc_pb.RetryPolicy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=typed(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        )
        policy.host_selection_retry_max_attempts = 5
    if spec.per_try_timeout_ms is not None:
        policy.per_try_timeout.CopyFrom(millis(spec.per_try_timeout_ms))
    if spec.retry_remote_localities:
        # As Istio: retries move to the next priority (other localities) once the
        # priorities tried so far failed, recomputed every 2 attempts.
        policy.retry_priority.CopyFrom(
            rc_pb.RetryPolicy.RetryPriority(
                name="envoy.retry_priorities.previous_priorities",
                typed_config=typed(
                    previous_priorities_pb2.PreviousPrioritiesConfig(update_frequency=2)
                ),
            )
        )
    return policy
