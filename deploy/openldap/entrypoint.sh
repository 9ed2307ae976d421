#!/bin/sh
# The directory's container: on the first start (an empty configuration directory) it makes a
# TLS certificate, loads config.ldif and seed.ldif with slapadd, then runs slapd in the
# foreground. Later starts only run slapd. The paths are variables so that tests/test_deploy.py
# can run this very script against Debian's slapd outside a container.
#
#   LDAP_OPERATOR_PASSWORD   password of uid=operator (first start only; required then)
#   LDAP_TLS_NAMES           DNS names the server certificate carries (default: openldap localhost)
#   LDAP_URLS                what slapd listens on (default: ldaps:/// ldapi:///)
set -eu

SEED_DIR=${LDAP_SEED_DIR:-/etc/ldap/acgs}
CONFIG_DIR=${LDAP_CONFIG_DIR:-/etc/ldap/slapd.d}
DATA_DIR=${LDAP_DATA_DIR:-/var/lib/ldap}
TLS_DIR=${LDAP_TLS_DIR:-/etc/ldap/tls}
CA_DIR=${LDAP_CA_DIR:-/etc/ldap/ca}
RUN_DIR=${LDAP_RUN_DIR:-/run/slapd}
URLS=${LDAP_URLS:-ldaps:/// ldapi:///}
NAMES=${LDAP_TLS_NAMES:-openldap localhost}

# As root, slapd drops to the openldap user and the files it reads are made its own.
DROP=""
if [ "$(id -u)" = 0 ]; then
    DROP="-u openldap -g openldap"
fi
own() {
    if [ -n "$DROP" ]; then chown -R openldap:openldap "$@"; fi
}

mkdir -p "$CONFIG_DIR" "$DATA_DIR" "$TLS_DIR" "$CA_DIR" "$RUN_DIR"

if [ ! -s "$TLS_DIR/server.pem" ]; then
    # A CA of this directory alone: its key signs the server certificate and is then deleted.
    # Only the CA certificate goes to $CA_DIR, the volume the ACGS services mount read-only
    # (ACGS_LDAP_CA_FILE); the server key stays in $TLS_DIR.
    work=$(mktemp -d)
    san=""
    for name in $NAMES; do san="${san}DNS:${name},"; done
    san="${san}IP:127.0.0.1"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 3650 \
        -subj "/CN=ACGS local LDAP CA" -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -subj "/CN=openldap" \
        -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
        "$san" > "$work/server.ext"
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 825 \
        -sha256 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
    install -m 0644 "$work/ca.pem" "$CA_DIR/ca.pem"
    install -m 0644 "$work/server.pem" "$TLS_DIR/server.pem"
    install -m 0600 "$work/server.key" "$TLS_DIR/server.key"
    rm -rf "$work"
fi

if [ -z "$(ls -A "$CONFIG_DIR")" ]; then
    if [ -z "${LDAP_OPERATOR_PASSWORD:-}" ]; then
        echo "entrypoint: set LDAP_OPERATOR_PASSWORD for the first start (the password of uid=operator)" >&2
        exit 2
    fi
    work=$(mktemp -d)
    # From a file, not the command line, where process listings would show it.
    (umask 077 && printf '%s' "$LDAP_OPERATOR_PASSWORD" > "$work/password")
    hash=$(slappasswd -T "$work/password")
    sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@TLS_DIR@|$TLS_DIR|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
        "$SEED_DIR/config.ldif" > "$work/config.ldif"
    sed -e "s|@OPERATOR_PASSWORD_HASH@|$hash|g" "$SEED_DIR/seed.ldif" > "$work/seed.ldif"
    slapadd -n 0 -F "$CONFIG_DIR" -l "$work/config.ldif"
    slapadd -n 1 -F "$CONFIG_DIR" -l "$work/seed.ldif"
    rm -rf "$work"
fi

own "$CONFIG_DIR" "$DATA_DIR" "$TLS_DIR" "$RUN_DIR"
# -d 0: in the foreground (the container's main process), without debug output.
# shellcheck disable=SC2086 # DROP is empty or two options
exec slapd -d 0 $DROP -h "$URLS" -F "$CONFIG_DIR"
