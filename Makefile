# ACGS task runner: people, hooks and CI all use these targets. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

OPA_VERSION := v1.22.3
GOBIN ?= $(HOME)/.local/bin
OPA ?= $(GOBIN)/opa
VENV ?= .venv
PY := $(VENV)/bin/python
# Build caches live outside the clone so fresh clones (CI) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/acgs/target
export ACGS_CACHE_DIR ?= $(HOME)/.cache/acgs
# Machine code for the thousands of conformance modules, so reruns skip Cranelift.
export ACGS_WASM_CACHE_DIR ?= $(ACGS_CACHE_DIR)/wasmtime
export PATH := $(GOBIN):/usr/local/go/bin:$(HOME)/.cargo/bin:$(PATH)

BUNDLE_DIR := python/acgs/bundles

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install system packages, the pinned OPA CLI and the Python venv (idempotent)
	bash scripts/setup.sh

.PHONY: lock
lock: ## Re-resolve requirements.lock from pyproject.toml's ranges (on purpose; commit the result)
	bash scripts/lock.sh

.PHONY: opa
opa: ## Install the pinned OPA CLI ($(OPA_VERSION)) into $(GOBIN)
	@if $(OPA) version 2>/dev/null | grep -q "Version: $(OPA_VERSION:v%=%)"; then \
		echo "opa $(OPA_VERSION) already at $(OPA)"; \
	else \
		GOBIN=$(GOBIN) go install github.com/open-policy-agent/opa@$(OPA_VERSION); \
	fi

.PHONY: bundles
bundles: opa ## Compile policies/ to Wasm bundles in bundles/ (constitution, example) and the test fixture
	OPA=$(OPA) OPA_VERSION=$(OPA_VERSION) bash policies/build.sh

POLICY_COVERAGE_MIN := 90

.PHONY: policy-test
policy-test: opa ## opa test on policies/, failing under $(POLICY_COVERAGE_MIN)% coverage
	@# The timeout is per test; a busy machine (or coverage tracing) slows each one down.
	$(OPA) test --timeout 60s policies/
	$(OPA) test --coverage --timeout 120s policies/ | $(PY) -c 'import json, sys; \
		c = json.load(sys.stdin)["coverage"]; \
		print(f"policy coverage {c:.1f}% (minimum $(POLICY_COVERAGE_MIN)%)"); \
		sys.exit(c < $(POLICY_COVERAGE_MIN))'

.PHONY: dev
dev: sandbox-launcher ## Build the extension (release) into the venv, and the sandbox's launcher
	@# maturin installs the package's dependencies with pip: held to the lock, like setup's.
	PIP_CONSTRAINT=requirements.lock $(PY) -m maturin develop --release --quiet

SANDBOX_LAUNCHER := python/acgs/services/sandbox/launcher/acgs-launcher

.PHONY: sandbox-launcher
sandbox-launcher: $(SANDBOX_LAUNCHER) ## The warm pool's launcher (C, static: zig and musl; runs inside bwrap sandboxes)

$(SANDBOX_LAUNCHER): python/acgs/services/sandbox/launcher/launcher.c scripts/sandbox-launcher.sh
	PY=$(PY) bash scripts/sandbox-launcher.sh $@

.PHONY: run
run: setup dev ## Set everything up, show a real decision, then serve all four services (8001-8004)
	$(VENV)/bin/acgs bundle inspect
	$(VENV)/bin/acgs decide
	@echo "starting ACGS: sandbox :8001, evolution :8002, audit :8003, policy :8004 (Ctrl-C stops them)"
	$(VENV)/bin/acgs serve

.PHONY: test
test: setup dev test-rust policy-test test-python lint bench-gate ## Install test dependencies and run every test

.PHONY: test-rust
test-rust: ## Rust unit and integration tests
	cargo test --workspace --exclude acgs-py --quiet

.PHONY: test-python
test-python: ## Python tests, the OPA conformance suite included
	ACGS_CONFORMANCE_REQUIRED=1 ACGS_BUNDLES_REQUIRED=1 ACGS_SANDBOX_REQUIRED=1 ACGS_BROWSER_REQUIRED=1 $(PY) -m pytest -q

.PHONY: conformance
conformance: dev ## Run OPA's conformance suite through ACGS and print the report
	$(PY) -m tests.conformance

.PHONY: conformance-plan
conformance-plan: dev ## OPA's conformance suite through the plan evaluator (evaluator="plan"), report and pass-rate test
	$(PY) -m tests.conformance --evaluator plan
	ACGS_PLAN_CONFORMANCE=1 ACGS_CONFORMANCE_REQUIRED=1 $(PY) -m pytest -q tests/conformance/test_plan_conformance.py

.PHONY: lint
lint: ## clippy, rustfmt check, mypy --strict and stubtest against the built module
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(PY) -m mypy
	$(PY) -m mypy.stubtest acgs._acgs

.PHONY: bench
bench: setup dev ## Every benchmark (hosts, quick suite, HTTP, audit, sandbox if root); writes bench/results/*.json, chart.png, the README table
	bash scripts/setup.sh --bench
	$(PY) bench/run.py
	$(PY) -m acgs bench --json bench/results/quick.json
	$(PY) bench/http/run.py
	$(PY) bench/http/run.py --policy constitution
	$(PY) bench/audit/run.py
	@if [ "$$(id -u)" = 0 ]; then $(PY) bench/sandbox_startup.py; else echo "bench: sandbox start-up skipped (needs root)"; fi
	$(PY) bench/report.py --readme

.PHONY: bench-hosts
bench-hosts: dev ## Wasm hosts and opa bench only (criterion, pytest-benchmark); writes bench/results/latest.md and hosts.json
	$(PY) bench/run.py $(BENCH_ARGS)

.PHONY: bench-peers
bench-peers: ## ACGS (Wasm, plan) vs regorus, opa bench, regopy on the constitution, RBAC and gateway policies; writes bench/results/peers.md
	nice $(PY) bench/peers.py $(BENCH_ARGS)

.PHONY: bench-report
bench-report: ## Table and chart (bench/results/chart.png) from bench/results/*.json, table into the README
	$(PY) bench/report.py --readme

.PHONY: bench-gate
bench-gate: setup ## CI performance gate: this checkout against the base commit (bench/gate-base), both built and timed here
	$(PY) bench/gate.py $(BENCH_ARGS)

.PHONY: serve-policy
serve-policy: dev ## Run the policy service on 127.0.0.1:8004 (settings from ACGS_* variables)
	$(PY) -m acgs.services.policy

.PHONY: serve-audit
serve-audit: dev ## Run the audit service on 127.0.0.1:8003 (settings from ACGS_* variables)
	$(PY) -m acgs.services.audit

.PHONY: bench-audit
bench-audit: dev ## Audit log: durable appends/s (SQLite, PostgreSQL) and verify events/s; not a test
	$(PY) bench/audit/run.py $(BENCH_ARGS)

.PHONY: bench-http
bench-http: dev ## HTTP load: the policy service vs `opa run --server` under wrk; writes bench/results/http.md
	bash scripts/setup.sh --bench
	$(PY) bench/http/run.py $(BENCH_ARGS)

.PHONY: bench-sandbox
bench-sandbox: ## Sandbox start-up over a bare process (bwrap, gVisor; needs root); writes bench/results/sandbox.md
	$(PY) bench/sandbox_startup.py $(BENCH_ARGS)

# Where `make wheel` puts the wheel (tests/test_packaging.py points it at a temporary directory).
WHEEL_DIR ?= dist

.PHONY: wheel
wheel: ## Release wheel into dist/ (or WHEEL_DIR): abi3, manylinux_2_28 (zig), the sandbox launcher inside
	@# The launcher is rebuilt every time (it takes well under a second once zig has its libc):
	@# the wheel ships what launcher.c says today, never a stale or hand-built binary.
	PY=$(PY) bash scripts/sandbox-launcher.sh $(SANDBOX_LAUNCHER)
	@# zig links against glibc 2.28's symbols, so the wheel installs on RHEL 8+, Debian 10+,
	@# Ubuntu 20.04+ and the like; maturin refuses to tag it manylinux_2_28 if anything needs more.
	PATH="$(abspath $(dir $(PY))):$$PATH" $(PY) -m maturin build --release --zig \
		--compatibility manylinux_2_28 --out $(WHEEL_DIR)

.PHONY: clean
clean: ## Remove build outputs in the clone (caches in ~/.cache/acgs stay)
	rm -rf dist .pytest_cache .mypy_cache
