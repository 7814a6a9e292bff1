#!/bin/sh
# Development PKI for a test site: a CA, a server certificate for the broker, a client
# certificate per name (its CN becomes the MQTT username and client id), and a CRL that the
# broker checks. Not for production keys.
#
#   deploy/dev-pki.sh OUTDIR [NAME...]      issue what is missing; NAME is a kiosk id, or an
#                                           instance: ledger-1, ledger-2... fleetd-1...
#   deploy/dev-pki.sh OUTDIR -revoke NAME   revoke NAME's certificate and rewrite crl.pem
#
# Always present afterwards: ca.pem, server.pem/.key, crl.pem, ledger-1 and fleetd-1. An
# existing certificate is kept (run again to add names). The CN is the identity the broker
# enforces, and the ACL (deploy/mosquitto/kioskd.acl) gives "ledger-N" and "fleetd-N" their
# rights: never issue a kiosk certificate under one of those names. Reload (or restart)
# mosquitto after a revocation: it reads the CRL when it starts.
set -eu
out=${1:?usage: dev-pki.sh OUTDIR [NAME...] | OUTDIR -revoke NAME}; shift
mkdir -p "$out"; cd "$out"
umask 077

cat > ca.cnf <<'CNF'
[ ca ]
default_ca = dev
[ dev ]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 365
CNF
[ -f index.txt ] || : > index.txt
[ -f crlnumber ] || echo 01 > crlnumber
[ -f ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -keyout ca.key -out ca.pem -subj "/CN=kioskd dev CA" 2>/dev/null
chmod 644 ca.pem

gencrl() {
  openssl ca -config ca.cnf -gencrl -keyfile ca.key -cert ca.pem -out crl.pem 2>/dev/null
  chmod 644 crl.pem
}

valid() { # a CN that is safe in a topic, a client id and a file name
  case $1 in ''|*[!A-Za-z0-9_-]*) return 1;; esac
  [ ${#1} -le 64 ]
}

if [ "${1:-}" = "-revoke" ]; then
  name=${2:?usage: dev-pki.sh OUTDIR -revoke NAME}
  valid "$name" || { echo "dev-pki: bad name $name" >&2; exit 2; }
  [ -f "$name.pem" ] || { echo "dev-pki: no certificate $name.pem" >&2; exit 1; }
  openssl ca -config ca.cnf -revoke "$name.pem" -keyfile ca.key -cert ca.pem 2>/dev/null
  gencrl
  echo "revoked $name; crl.pem rewritten (restart or reload the broker)"
  exit 0
fi

issue() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -out "$1.pem" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"; chmod 600 "$1.key"; chmod 644 "$1.pem"
}
[ -f server.pem ] || issue server "${BROKER_HOST:-localhost}" "subjectAltName=DNS:${BROKER_HOST:-localhost},IP:127.0.0.1
extendedKeyUsage=serverAuth"
for k in ledger-1 fleetd-1 "$@"; do
  valid "$k" || { echo "dev-pki: bad name $k (letters, digits, _ and -, at most 64)" >&2; exit 2; }
  [ -f "$k.pem" ] || issue "$k" "$k" "extendedKeyUsage=clientAuth"
done
[ -f crl.pem ] || gencrl
echo "PKI in $out"
