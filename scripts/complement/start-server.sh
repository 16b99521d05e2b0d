#!/usr/bin/env bash
# Starts one homeserver for Complement's external deployment with federation: start-server.sh PORT NAME
# (the shared driver's start-server.sh, plus TLS and names). Runs `npm start` in $PROJECT_CHECKOUT with:
# - plain HTTP on PORT (Complement's clients, and Complement reaching the federation API as hsN),
# - HTTPS on EXT_AUX_PORT (PORT+1) with a certificate for NAME issued by Complement's CA (the files that
#   myelin_federation.go writes: COMPLEMENT_CA_CERT, COMPLEMENT_CA_KEY), for the other homeservers,
# - NODE_EXTRA_CA_CERTS = that CA, so it trusts the other servers and Complement's own federation server,
# - OUTBOUND_HOSTS_FILE shared by the servers of one deployment: each adds `NAME 127.0.0.1:HTTPS_PORT`
#   and Complement's host name maps to 127.0.0.1 (its federation server listens there),
# - WELL_KNOWN_SERVER=NAME:8448, so that discovery of a port-less name ends at the .well-known step
#   (no SRV look-up over DNS-over-HTTPS, which has no answer offline); the hosts file maps any port.
# Prints the PID of the server's process group once /_matrix/client/versions answers on 127.0.0.1:PORT.
# env (set by the deployer): EXT_DATA_DIR (RUN/<pid>-<seq>-NAME/data), EXT_LOG, EXT_AUX_PORT.
set -u
port=$1 name=$2
cd "${PROJECT_CHECKOUT:?set PROJECT_CHECKOUT}" || exit 2
: "${COMPLEMENT_CA_CERT:?the CA of Complement is missing: scripts/complement/myelin_federation.go writes it}"
https_port=$EXT_AUX_PORT
server_dir=$(dirname "$EXT_DATA_DIR")
deployment=$(basename "$server_dir")
hosts="$(dirname "$server_dir")/${deployment%"$name"}hosts"
tls_dir="$server_dir/tls"
mkdir -p "$tls_dir"
if [ ! -f "$tls_dir/server.crt" ]; then
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$name" >"$tls_dir/ext.cnf"
  openssl req -newkey rsa:2048 -nodes -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" -subj "/CN=$name" 2>"$tls_dir/openssl.log" &&
    openssl x509 -req -in "$tls_dir/server.csr" -CA "$COMPLEMENT_CA_CERT" -CAkey "$COMPLEMENT_CA_KEY" -CAcreateserial \
      -CAserial "$tls_dir/ca.srl" -out "$tls_dir/server.crt" -days 30 -extfile "$tls_dir/ext.cnf" 2>>"$tls_dir/openssl.log" ||
    { echo "could not issue a certificate for $name; see $tls_dir/openssl.log" >&2; exit 3; }
fi
complement_host=${COMPLEMENT_HOSTNAME_RUNNING_COMPLEMENT:-host.docker.internal}
{ echo "$complement_host 127.0.0.1"; echo "$name 127.0.0.1:$https_port"; } >>"$hosts"

# Admin registration with Complement's shared secret; rate limits off, as Complement's Synapse image does.
export REGISTRATION_SHARED_SECRET=complement RC_LOGIN_ADDRESS=off RC_LOGIN_ACCOUNT=off \
  RC_LOGIN_FAILED_ATTEMPTS=off RC_REGISTRATION=off RC_REGISTRATION_TOKEN_VALIDITY=off
PORT=$port SERVER_NAME=$name DATA_DIR=$EXT_DATA_DIR INSPECTOR_PORT=$((port + 20000)) \
  HTTPS_KEY=$tls_dir/server.key HTTPS_CERT=$tls_dir/server.crt HTTPS_PORT=$https_port \
  NODE_EXTRA_CA_CERTS=$COMPLEMENT_CA_CERT OUTBOUND_HOSTS_FILE=$hosts WELL_KNOWN_SERVER=$name:8448 \
  setsid npm start >"$EXT_LOG" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 ${COMPLEMENT_SPAWN_HS_TIMEOUT_SECS:-90}); do
  if curl -sf "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1 &&
    curl -sf --cacert "$COMPLEMENT_CA_CERT" --resolve "$name:$https_port:127.0.0.1" \
      "https://$name:$https_port/_matrix/key/v2/server" >/dev/null 2>&1; then
    echo "$pid"; exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { echo "server exited; see $EXT_LOG" >&2; exit 4; }
  sleep 1
done
echo "no answer on port $port; see $EXT_LOG" >&2; kill -- -"$pid" 2>/dev/null; exit 5
