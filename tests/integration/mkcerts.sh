#!/bin/sh
# mkcerts.sh - makes a throwaway PKI for the TLS tests with the openssl CLI.
#
#   tests/integration/mkcerts.sh DIR
#
# Writes into DIR (created if missing), every key mode 0600, valid for 2 days:
#   ca.pem ca.key                 the test CA
#   server.pem server.key         signed by ca; SAN IP:127.0.0.1, IP:::1, DNS:localhost
#   client.pem client.key         signed by ca; clientAuth
#   other-ca.pem other-ca.key     a second, unrelated CA
#   other-client.pem other-client.key   signed by other-ca
# Exits non-zero with a message when openssl is missing or fails.
set -eu

dir=${1:?usage: mkcerts.sh DIR}
command -v openssl >/dev/null 2>&1 || {
    echo "mkcerts.sh: openssl not found (Debian package openssl)" >&2
    exit 1
}
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # NAME CN
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() { # NAME CA CN EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3"
    printf '%s\n' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
        -days 2 -out "$1.pem" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca "echosrv test CA"
ca other-ca "another test CA"
leaf server ca localhost "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
extendedKeyUsage=serverAuth
basicConstraints=CA:FALSE"
leaf client ca "test client" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
leaf other-client other-ca "stranger" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
chmod 0644 ./*.pem
