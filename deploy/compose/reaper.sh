#!/bin/sh
# The `reaper` service of docker-compose.yml. The agents run their workloads on the
# host's engine, beside the stack: `docker compose down` would leave them. The agents
# depend on this service, so compose stops them first and this one last; when it is
# stopped and no agent of its project runs any more (the stack is going down, not this
# container being recreated), it removes what the stack's nodes made: the containers
# labelled persys.nodeId=<node> and the networks, volumes and images of their Compose
# projects.
set -u
nodes="${PERSYS_COMPOSE_NODES:?}"
project=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' "$(hostname)")

remove() {
  # remove <docker object command...> <ids>: nothing when the list is empty
  [ -n "$2" ] && docker $1 $2 >/dev/null
}

cleanup() {
  running=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter label=persys.compose.role=agent)
  if [ -n "$running" ]; then
    echo "agents of $project still run: their workloads stay"
    exit 0
  fi
  for node in $nodes; do
    filter="label=persys.nodeId=$node"
    remove "rm -f" "$(docker ps -aq --filter "$filter")"
    remove "network rm" "$(docker network ls -q --filter "$filter")"
    remove "volume rm -f" "$(docker volume ls -q --filter "$filter")"
    remove "image rm -f" "$(docker image ls -q --filter "$filter")"
    echo "removed the workloads of node $node"
  done
  exit 0
}

trap cleanup TERM INT
echo "reaper of $project watching nodes: $nodes"
while :; do
  sleep 3600 &
  wait $!
done
