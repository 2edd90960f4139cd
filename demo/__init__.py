"""Demos that need more than the pilotfish package: they run with the repository's
testsupport (``make demo-mesh`` runs ``python -m demo.mesh`` from the repository root)."""
