#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test persys:
# protoc (etcd-client's build), etcd (the store), busybox-static (the test image),
# iproute2 and iptables (fault tests across network namespaces), curl (an HTTP/2 client
# of tests/tests/hardening.rs), OpenSSL headers and git (git-compose), dig (dnsutils:
# tests/tests/dns_responder.rs asks persys-dns with it), prometheus and promtool
# (tests/tests/observability.rs), schemathesis, cargo-machete (unused dependencies).
# Skips everything already present.
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
# git-compose: libgit2 (vendored, built by git2) talks HTTPS through the system OpenSSL;
# tests make their repositories with the git CLI.
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev pkg-config)
command -v git >/dev/null || need+=(git)
command -v dig >/dev/null || need+=(dnsutils)
# Prometheus and promtool: the observability tests run their own server on a free port.
command -v promtool >/dev/null || need+=(prometheus)
# docker-compose.yml (tests/tests/compose_stack.rs): Compose v2 where the plugin is
# installed, else Debian's docker-compose (v1).
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need+=(docker-compose)
# Fault tests: netem through tc, or an NFQUEUE emulation where the kernel lacks netem.
command -v iptables >/dev/null || need+=(iptables)
command -v tc >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a Prometheus on :9090 where an init system runs it; the tests
  # need none (and nothing may hold a port they could pick).
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    $sudo_cmd systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# schemathesis (PyPI) fuzzes the gateway against its own OpenAPI document.
command -v schemathesis >/dev/null || python3 -m pip install -q --disable-pip-version-check schemathesis
# kubernetes-validate (PyPI) checks the rendered deploy/k8s manifests against the API
# schemas it ships, offline (tests/tests/deploy_manifests.rs; kubectl renders them).
# Pinned like cargo-machete.
command -v kubernetes-validate >/dev/null \
  || python3 -m pip install -q --disable-pip-version-check kubernetes-validate==1.37.0
# cargo-machete (crates.io) finds dependencies no crate uses; `cargo install` puts it in
# ~/.cargo/bin, so only the first run builds it. Pinned so CI's verdict cannot change
# under us with a new release.
command -v cargo-machete >/dev/null || [ -x "$HOME/.cargo/bin/cargo-machete" ] \
  || cargo install cargo-machete --version 0.9.2 --locked
docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable (is dockerd running?)" >&2; exit 1; }
