#!/usr/bin/env bash
# Builds `busybox:local`, the image tests and `persys dev` run, without a registry:
# Debian's static busybox in an otherwise empty root file system, via `docker import`.
set -euo pipefail
image="${1:-busybox:local}"
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! file -L "$bb" 2>/dev/null | grep -q static; then
  bb=/bin/busybox
fi
[ -x "$bb" ] || { echo "busybox-static is not installed (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc"
cp "$bb" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
# A page for `httpd -h /www`, as the service example of docs/services.md serves.
mkdir -p "$root/www"
echo ok > "$root/www/index.html"
tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$image" >/dev/null
echo "built $image"
