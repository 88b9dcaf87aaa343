#!/usr/bin/env bash
# Builds `persys-compose:local`, the one image every service of docker-compose.yml runs,
# without a registry: `docker import` of a root file system made here from
# - the project's binaries (persys-scheduler, -agent, -gateway, -dns and persys), with
#   their debug info stripped;
# - Debian's packages: etcd (etcd-server), prometheus, busybox (busybox-static: the
#   shell), the docker CLI (docker.io: the reaper service), curl (health checks over
#   TLS: busybox's wget cannot talk to rustls);
# - the dynamic loader and the shared libraries `ldd` lists for those binaries, copied
#   from this host;
# - deploy/compose/ (entry scripts, Prometheus' scrape config) and
#   deploy/prometheus/alerts.yml.
#
#   scripts/compose-images.sh            # cargo build --release, then the image
#   scripts/compose-images.sh --debug    # cargo build (debug), then the image
#   PERSYS_BIN_DIR=target/debug scripts/compose-images.sh   # these binaries, no build
#
# The image is labelled with a key of everything that went in (paths, sizes, mtimes,
# the files of deploy/compose): when nothing changed, nothing is rebuilt. The image it
# replaces is removed once no tag names it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
image="${PERSYS_COMPOSE_IMAGE:-persys-compose:local}"
profile=release
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    --release) profile=release ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (--debug | --release)" >&2; exit 2 ;;
  esac
done
bins=(persys-scheduler persys-agent persys-gateway persys-dns persys)
if [ -n "${PERSYS_BIN_DIR:-}" ]; then
  bin_dir=$(cd "$PERSYS_BIN_DIR" && pwd)
else
  flag=(); [ "$profile" = release ] && flag=(--release)
  cargo build "${flag[@]}" --locked --bins \
    -p persys-scheduler -p persys-agent -p persys-gateway -p persys-dns -p persys-cli
  bin_dir="$repo/target/$profile"
fi
for b in "${bins[@]}"; do
  [ -x "$bin_dir/$b" ] || { echo "$bin_dir/$b not found: build it first (cargo build --workspace --bins)" >&2; exit 1; }
done

# Debian's programs. The docker CLI is Debian's (docker.io), not whatever comes first
# on PATH.
tool() {
  for p in "$@"; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  return 1
}
etcd=$(tool /usr/bin/etcd "$(command -v etcd || true)") \
  || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
prometheus=$(tool /usr/bin/prometheus "$(command -v prometheus || true)") \
  || { echo "prometheus not found: apt-get install prometheus" >&2; exit 1; }
docker_cli=$(tool /usr/bin/docker "$(command -v docker || true)") \
  || { echo "the docker CLI is not found" >&2; exit 1; }
curl=$(tool /usr/bin/curl "$(command -v curl || true)") \
  || { echo "curl not found: apt-get install curl" >&2; exit 1; }
busybox=/bin/busybox
file -L "$busybox" 2>/dev/null | grep -q static \
  || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
system=("$etcd" "$prometheus" "$docker_cli" "$curl" "$busybox")

# One build at a time on this engine (tests may run the script in parallel).
exec 9>"${TMPDIR:-/tmp}/persys-compose-images.lock"
flock 9

key=$(
  {
    for b in "${bins[@]}"; do stat -L -c '%n %s %Y' "$bin_dir/$b"; done
    for p in "${system[@]}"; do stat -L -c '%n %s %Y' "$p"; done
    sha256sum "$0" deploy/compose/* deploy/prometheus/alerts.yml
  } | sha256sum | cut -c1-32
)
old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
if [ -n "$old" ] && [ "$(docker image inspect -f '{{index .Config.Labels "persys.compose.key"}}' "$image")" = "$key" ]; then
  echo "$image is up to date"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc/ssl/certs,tmp,var/lib,compose,lib64}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
for b in "${bins[@]}"; do
  strip --strip-debug -o "$root/usr/local/bin/$b" "$bin_dir/$b" 2>/dev/null \
    || cp "$bin_dir/$b" "$root/usr/local/bin/$b"
done
cp "$etcd" "$root/usr/bin/etcd"
cp "$prometheus" "$root/usr/bin/prometheus"
cp "$docker_cli" "$root/usr/bin/docker"
cp "$curl" "$root/usr/bin/curl"
# The loader and every shared library the binaries need, from this host.
for exe in "$root"/usr/local/bin/* "$root"/usr/bin/*; do
  ldd "$exe" 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp deploy/compose/* deploy/prometheus/alerts.yml "$root/compose/"
chmod 0755 "$root"/compose/*.sh

tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c "LABEL persys.compose.key=$key" \
  -c 'CMD ["/bin/sh"]' \
  - "$image" >/dev/null
new=$(docker image inspect -f '{{.Id}}' "$image")
# The image this one replaces, unless something still names or runs it.
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  docker image rm "$old" >/dev/null 2>&1 || true
fi
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
