#!/usr/bin/env bash
# Installs what ACGS needs on a fresh Debian machine. Safe to run again: each step checks first.
# `setup.sh --bench` also installs what the benchmarks need (wrk for HTTP load).
set -euo pipefail
cd "$(dirname "$0")/.."

GOBIN=${GOBIN:-$HOME/.local/bin}
OPA_VERSION=v1.22.3
VENV=${VENV:-.venv}
export PATH="$GOBIN:/usr/local/go/bin:$HOME/.cargo/bin:$PATH"

# System packages. redis-server: the L2 cache tests run a real one. postgresql: the service
# tests start a throwaway server (tests/services/pg.py). bubblewrap, runsc: the sandbox
# controller's runtimes (bwrap, gVisor); slirp4netns, nftables: the user-mode network and egress
# filter of runs allowed the network. chromium, chromium-driver: the evolution review page's
# browser test. openjdk-17-jre-headless, maven: the audit stream test runs a Kafka broker from
# Maven Central jars (tests/services/kafka.py). slapd, ldap-utils: the operators' LDAP sign-in
# tests start and seed a throwaway directory (tests/services/ldap.py).
APT_PACKAGES=(build-essential pkg-config git curl ca-certificates redis-server postgresql bubblewrap runsc slirp4netns nftables chromium chromium-driver
    openjdk-17-jre-headless maven slapd ldap-utils)
if [ "${1:-}" = "--bench" ]; then
    APT_PACKAGES+=(wrk)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Node.js and npm run the OIDC provider of the sign-in tests (tests/services/oidc.py, which
# installs its locked npm packages into ~/.cache/acgs). Checked by command, not package: the
# machines may carry a Node.js build whose package is not Debian's.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "setup: installing nodejs npm"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi

# promtool checks deploy/prometheus's alert rules in the tests; it ships in Debian's prometheus
# package. No recommends (node-exporter), and where systemd started the Prometheus daemon on
# install, it is stopped and disabled: the tests want the tool, not a server on :9090.
if ! command -v promtool >/dev/null; then
    echo "setup: installing prometheus (for promtool)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# Toolchains: Rust and Go must exist; rustup/go are preinstalled on the project's machines.
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)"; exit 1; }
command -v go >/dev/null || { echo "setup: go not found (needed to install the OPA CLI)"; exit 1; }

# The pinned OPA CLI: builds bundles, runs `opa test`, and is the reference in conformance.
if ! "$GOBIN/opa" version 2>/dev/null | grep -q "Version: ${OPA_VERSION#v}"; then
    echo "setup: installing opa $OPA_VERSION"
    mkdir -p "$GOBIN"
    GOBIN="$GOBIN" go install "github.com/open-policy-agent/opa@$OPA_VERSION"
fi

# Python virtualenv with the build and test tools.
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Exactly the versions requirements.lock pins (`make lock` refreshes it on purpose), so a fresh
# machine tests what CI tested. Not `pip install -e .`: that would build the extension, which
# `make dev` does.
stamp="$VENV/.acgs-deps"
want=$(sha256sum requirements.lock | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.lock
    echo "$want" > "$stamp"
fi
echo "setup: ok (opa $("$GOBIN/opa" version | head -1 | awk '{print $2}'), $("$VENV/bin/python" --version))"
