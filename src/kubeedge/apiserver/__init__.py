"""Embedded Kubernetes-API-compatible control plane on SQLite (single box and tests)."""
