"""Fixtures shared by every test directory: a throwaway PostgreSQL server (``postgres_url``,
``postgres_database``; see tests/services/pg.py)."""

pytest_plugins = ["tests.services.pg"]
