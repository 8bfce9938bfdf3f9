#!/bin/sh
# A throw-away self-signed certificate for 127.0.0.1 (EC P-256), made once per machine boot, for
# the TLS variants of the harness peers (bench/peer/*): prints the folder holding cert.pem and key.pem.
set -eu
DIR="${TMPDIR:-/tmp}/ocpprpc-bench-tls"
if [ ! -s "$DIR/cert.pem" ]; then
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/ocpprpc-bench-tls.XXXXXX")"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    mv -T "$TMP" "$DIR" 2>/dev/null || rm -rf "$TMP"
fi
echo "$DIR"
