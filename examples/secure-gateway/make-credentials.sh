#!/usr/bin/env bash
# Make the walkthrough's certificates with openssl, as Istio's secure gateway docs do
# (a root CA "example.com", server certificates it signs, a client certificate), and
# write them as Kubernetes Secrets in istio-system to credentials.yaml, next to the
# other manifests, for `pilotfish serve --config-dir` to read.
#
#   ./make-credentials.sh [DIR]     # default: this script's directory
#
# Each run makes a new CA and new certificates: running it again is a rotation.
# Certificates and keys go to DIR/certs/ (clients need certs/example.com.crt).
set -euo pipefail

dir=${1:-$(cd "$(dirname "$0")" && pwd)}
certs="$dir/certs"
mkdir -p "$certs"
cd "$certs"

openssl req -x509 -sha256 -nodes -days 365 -newkey rsa:2048 \
  -subj '/O=example Inc./CN=example.com' \
  -keyout example.com.key -out example.com.crt 2>/dev/null

# leaf NAME USAGE: a key and a certificate for NAME, signed by the example.com CA.
leaf() {
  openssl req -out "$1.csr" -newkey rsa:2048 -nodes -keyout "$1.key" \
    -subj "/CN=$1/O=$1 organization" 2>/dev/null
  openssl x509 -req -sha256 -days 365 -CA example.com.crt -CAkey example.com.key \
    -set_serial "$RANDOM" -in "$1.csr" -out "$1.crt" \
    -extfile <(printf 'subjectAltName=DNS:%s\nextendedKeyUsage=%s\n' "$1" "$2") 2>/dev/null
  rm "$1.csr"
}
leaf httpbin.example.com serverAuth
leaf helloworld-v1.example.com serverAuth
leaf mtls.example.com serverAuth
leaf nginx.example.com serverAuth
leaf client.example.com clientAuth

b64() { base64 -w0 < "$1"; }

# secret NAME TYPE KEY=FILE...: a Secret as `kubectl create secret ... -o yaml` prints it.
secret() {
  local name=$1 type=$2
  shift 2
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: istio-system}\ntype: %s\ndata:\n' "$name" "$type"
  for pair in "$@"; do
    printf '  %s: %s\n' "${pair%%=*}" "$(b64 "${pair#*=}")"
  done
}

{
  echo "# Made by make-credentials.sh: test certificates, never real ones."
  secret httpbin-credential kubernetes.io/tls \
    tls.crt=httpbin.example.com.crt tls.key=httpbin.example.com.key
  secret helloworld-credential kubernetes.io/tls \
    tls.crt=helloworld-v1.example.com.crt tls.key=helloworld-v1.example.com.key
  # MUTUAL: generic, with the CA that client certificates must chain to.
  secret mtls-credential Opaque \
    tls.crt=mtls.example.com.crt tls.key=mtls.example.com.key ca.crt=example.com.crt
} > "$dir/credentials.yaml.tmp"
# One rename: pilotfish never reads a half-written file.
mv "$dir/credentials.yaml.tmp" "$dir/credentials.yaml"
echo "wrote $dir/credentials.yaml and $certs/"
