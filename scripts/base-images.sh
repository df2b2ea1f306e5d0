#!/usr/bin/env bash
# Create local stand-ins for the base images the Dockerfiles name, where nothing can be pulled:
#   busybox:1.36       from Debian's busybox-static
#   python:3.11-slim   from a debootstrap'ed Debian bookworm minbase with python3
# Idempotent: an image that already exists is left alone (FORCE=1 rebuilds).
set -euo pipefail

# An image counts as present if it exists locally or can be pulled (where a registry is reachable).
have() {
  [ "${FORCE:-0}" != 1 ] || return 1
  docker image inspect "$1" >/dev/null 2>&1 || timeout 120 docker pull -q "$1" >/dev/null 2>&1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if have busybox:1.36; then
  echo "busybox:1.36 present"
else
  busybox=$(command -v busybox || true)
  [ -n "$busybox" ] || { echo "busybox-static is not installed" >&2; exit 1; }
  root="$work/busybox"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  tar -C "$root" -c . | docker import -c 'CMD ["sh"]' -c 'ENV PATH=/bin' - busybox:1.36 >/dev/null
  echo "busybox:1.36 created"
fi

if have python:3.11-slim; then
  echo "python:3.11-slim present"
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/compose-tasks/python-bookworm.tar"
  if [ ! -s "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    echo "debootstrap bookworm (minbase + python3) ..."
    debootstrap --variant=minbase --include=python3 bookworm "$work/py" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$work/py/var/cache/apt/archives/"*.deb "$work/py/var/lib/apt/lists/"*
    tar -C "$work/py" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  fi
  docker import -c 'CMD ["python3"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$cache" python:3.11-slim >/dev/null
  echo "python:3.11-slim created"
fi
