#!/bin/sh
# Development PKI for a test site: a CA, a server certificate for the broker, and client
# certificates whose CN is the kiosk id (or "ledger"). Not for production keys.
#   deploy/dev-pki.sh OUTDIR KIOSK_ID [KIOSK_ID...]
set -eu
out=${1:?usage: dev-pki.sh OUTDIR KIOSK_ID...}; shift
mkdir -p "$out"; cd "$out"
[ -f ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -keyout ca.key -out ca.pem -subj "/CN=kioskd dev CA"
issue() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -out "$1.pem" -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"; chmod 600 "$1.key"
}
[ -f server.pem ] || issue server "${BROKER_HOST:-localhost}" "subjectAltName=DNS:${BROKER_HOST:-localhost},IP:127.0.0.1
extendedKeyUsage=serverAuth"
[ -f ledger.pem ] || issue ledger ledger "extendedKeyUsage=clientAuth"
for k in "$@"; do issue "$k" "$k" "extendedKeyUsage=clientAuth"; done
echo "PKI in $out"
