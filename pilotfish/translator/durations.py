"""Every Istio duration the translator reads goes through here, with Envoy's rules
(``pilotfish.api.durations.duration_problem``: the one rule, also used by MeshConfig).

Envoy refuses a negative ``google.protobuf.Duration`` anywhere in its config, and some
fields must be more than zero (a cluster's ``connect_timeout``, outlier detection's
``interval`` and ``base_ejection_time``, a fault's ``fixed_delay``). Durations reach
Envoy in whole milliseconds (ir.py), so "more than zero" means at least 1ms, which is
also Istio's own validation rule for these fields. A duration that breaks its rule would
get the whole resource NACKed: it is reported at the user's field and ignored (Envoy's
default applies), and the rest of the object is served.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from pilotfish.api.durations import duration_problem, to_millis
from pilotfish.model.objects import ConfigObject
from pilotfish.translator.diagnostics import Diagnostics


def duration_ms(
    message: Message,
    field_name: str,
    obj: ConfigObject,
    path: str,
    diag: Diagnostics,
    *,
    positive: bool = False,
) -> int | None:
    """``message.<field_name>`` in whole milliseconds; None when unset, or when Envoy would
    refuse it (then reported on ``obj`` at ``path``, and ignored)."""
    if not message.HasField(field_name):
        return None
    d: Duration = getattr(message, field_name)
    problem = duration_problem(d, positive=positive)
    if problem is not None:
        diag.error(obj, path, f"{problem}: ignored")
        return None
    return to_millis(d)
