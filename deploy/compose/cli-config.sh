#!/bin/sh
# The `cli-config` service of docker-compose.yml: once the gateway is ready, writes the
# host CLI's config to the state directory (./.persys-compose unless
# PERSYS_COMPOSE_STATE says otherwise): the gateway on its published loopback port with
# the admin API token, and the admin certificate, which also works against a
# scheduler's API. Files get the owner of the directory; config.yaml and the key are
# mode 0600.
set -eu
state=/state
port="${PERSYS_COMPOSE_GATEWAY_PORT:?}"
token_file=/gateway/admin-token
i=0
while [ ! -s "$token_file" ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || { echo "the gateway wrote no admin token in 60 s" >&2; exit 1; }
  sleep 0.2
done
token=$(cat "$token_file")
umask 077
for f in ca.crt admin.crt admin.key; do
  cp "/scheduler/$f" "$state/.$f" && mv "$state/.$f" "$state/$f"
done
cat >"$state/.config.yaml" <<CONFIG
# Written by the cli-config service of docker-compose.yml: persys --config THIS_FILE ...
api_endpoint: https://127.0.0.1:$port
ca_cert_path: ca.crt
cert_path: admin.crt
key_path: admin.key
token: $token
CONFIG
mv "$state/.config.yaml" "$state/config.yaml"
chmod 0644 "$state/ca.crt" "$state/admin.crt"
owner=$(stat -c %u:%g "$state")
chown "$owner" "$state/config.yaml" "$state/ca.crt" "$state/admin.crt" "$state/admin.key"
echo "wrote $state/config.yaml (api_endpoint https://127.0.0.1:$port)"
