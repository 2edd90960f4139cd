"""Our Istio API protos, compiled (see protos/ and ``python -m pilotfish.api.generate``)."""
