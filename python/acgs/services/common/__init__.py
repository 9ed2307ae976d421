"""Pieces every ACGS service shares: OPA-style error bodies, request body reading, ids."""
