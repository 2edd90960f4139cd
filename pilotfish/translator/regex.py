"""Regexes are checked with RE2, the engine Envoy runs them on (as Istio checks with Go's).

A pattern Python accepts but RE2 refuses (lookahead, backreferences) would make Envoy
NACK the whole RouteConfiguration; catching it here costs only the one match.
"""

from __future__ import annotations

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would otherwise print every bad pattern to stderr


def regex_error(pattern: str) -> str | None:
    """None when Envoy will accept the pattern, else RE2's reason."""
    try:
        re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return None
