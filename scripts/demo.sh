#!/usr/bin/env bash
# One command from a fresh machine to a working cluster: installs what is missing,
# builds persys, starts a local cluster (`persys dev`: etcd, scheduler, DNS, agent), runs a
# container, shows it Running with its logs, and keeps the cluster up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bins
bash scripts/test-image.sh busybox:local
bin="$PWD/target/release"
dir="${PERSYS_DEV_DIR:-$PWD/.persys-dev}"
mkdir -p "$dir"
agents="${AGENTS:-1}"
"$bin/persys" dev --data-dir "$dir" --agents "$agents" > "$dir/dev.log" 2>&1 &
dev=$!
cleanup() {
  kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null || true
  # Agents leave their containers running when they stop (static stability); this demo
  # cluster is throwaway, so remove what its nodes ran.
  for i in $(seq 1 "$agents"); do
    docker ps -aq --filter "label=persys.nodeId=node-$i" | xargs -r docker rm -f >/dev/null
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export PERSYS_CONFIG="$dir/config.yaml"
for _ in $(seq 1 300); do
  if [ -f "$PERSYS_CONFIG" ] && "$bin/persys" node list 2>/dev/null | grep -q Active; then break; fi
  kill -0 $dev 2>/dev/null || { cat "$dir/dev.log"; exit 1; }
  sleep 0.1
done
"$bin/persys" node list
id=$("$bin/persys" run --name hello --wait busybox:local -- sh -c 'echo hello from persys; while true; do date; sleep 5; done' | tail -n1)
"$bin/persys" workload list
echo "--- logs of $id"
sleep 0.5
"$bin/persys" logs --tail 5 "$id"
cat <<MSG

The cluster is running (logs in $dir/logs). In another shell:
  export PERSYS_CONFIG=$PERSYS_CONFIG
  $bin/persys workload list
  $bin/persys logs -f $id
MSG
# persys-dns (when built) answers the workload's name.
if dns=$(cat "$dir/dns-addr" 2>/dev/null) && [ -n "$dns" ]; then
  echo "  dig @${dns%:*} -p ${dns##*:} hello.cluster.local.dev"
fi
echo "Press Ctrl-C to stop it."
wait $dev
