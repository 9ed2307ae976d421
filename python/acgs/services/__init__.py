"""The ACGS REST services (policy :8004; evolution, audit and sandbox follow)."""
