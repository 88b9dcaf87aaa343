#!/bin/sh
# An agent of docker-compose.yml: joins with the token of the `join` volume and
# advertises this container's address on the stack's network (where the schedulers
# and Prometheus reach its API), then becomes persys-agent. It drives the host's engine
# through the mounted socket, so its workloads run beside the stack's containers, on
# the engine's default bridge network; Docker isolates bridge networks from each
# other, so this container joins that network too, or the agent's HTTP and TCP health
# checks could not reach its workloads.
set -eu
self=$(hostname)
workloads_net="${PERSYS_COMPOSE_WORKLOAD_NETWORK:-bridge}"
if [ -z "${PERSYS_ADVERTISE_ADDRESS:-}" ]; then
  # The first network of this container that is not the workloads' one.
  PERSYS_ADVERTISE_ADDRESS=$(docker inspect -f \
    '{{range $name, $n := .NetworkSettings.Networks}}{{$name}} {{$n.IPAddress}}{{"\n"}}{{end}}' "$self" \
    | awk -v skip="$workloads_net" '$1 != skip && $2 != "" { print $2; exit }')
  [ -n "$PERSYS_ADVERTISE_ADDRESS" ] || { echo "cannot find this container's address" >&2; exit 1; }
  export PERSYS_ADVERTISE_ADDRESS
fi
if ! docker inspect -f '{{json .NetworkSettings.Networks}}' "$self" | grep -q "\"$workloads_net\""; then
  docker network connect "$workloads_net" "$self"
fi
PERSYS_JOIN_TOKEN=$(cat /join/join-token)
export PERSYS_JOIN_TOKEN
exec persys-agent "$@"
