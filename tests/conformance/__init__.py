"""OPA conformance runner for the ACGS Wasm host.

Takes OPA's own conformance cases (YAML), compiles each one to a Wasm bundle
with the pinned ``opa`` CLI, evaluates it through :mod:`acgs` and compares the
result with what OPA expects. Run it with ``python -m tests.conformance``.
"""

OPA_VERSION = "1.22.3"
