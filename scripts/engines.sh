#!/usr/bin/env bash
# Today's Docker beside the machine's own engine: Engine 28.5 with buildx 0.29 and compose 2.40,
# each engine in its own network namespace (two engines in one namespace fight over docker0).
#
#   scripts/engines.sh up [NAME...]   install (once) and start engines; NAME: containerd, classic
#   scripts/engines.sh down [NAME...] stop them and remove their namespaces (by PID and by name)
#   scripts/engines.sh restart NAME   stop NAME's dockerd (SIGTERM, or SIGKILL with --kill) and
#                                     start it again in the same namespace (the engine tests'
#                                     engine restart; run from inside the namespace too)
#   scripts/engines.sh list           the engines that run, one per line
#   scripts/engines.sh env NAME       export lines for a shell to use NAME
#   scripts/engines.sh images NAME    load the base images NAME lacks from the machine's engine
#                                     (a prune there took them; the engine passes call it)
#   scripts/engines.sh run NAME CMD…  run CMD inside NAME's namespace, the docker CLI pointed at it
#                                     (ENGINE_NAME names it; ENGINE_OLD_BUILDX is Debian 13's buildx)
#
# containerd: the containerd image store (the default of new Engine 29 installs, Docker Desktop).
# classic:    the classic image store with buildx (the shape of GitHub's hosted runners).
# containerd2: a second containerd-store engine: the containerd pass's tests that must run
#             alone run there, beside its tests that run side by side (noxfile.py).
# small:      classic, its data root a tmpfs of SMALL_SIZE (default 300m): a disk that fills up.
#             Not in the matrix: the disk-full test starts and stops it.
# Each namespace also has a registry on its own 127.0.0.1:5000 (Debian's docker-registry).
# Packages come from Debian sid through a source list of our own (nothing is added to the
# system's sources) and are unpacked, not installed; the machine's runc is kept. A namespace
# has no route out: everything is installed before an engine starts. Debian/root only.
set -euo pipefail

VERSION=28.5
PACKAGES=(docker.io docker-buildx containerd docker-compose)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/compose-tasks/engines"
RUN=/run/compose-tasks-engines
ALL=(containerd classic containerd2)
EXTRA=(small)
BASES=(busybox:1.36 python:3.11-slim)

die() { echo "engines: $*" >&2; exit 1; }

# Unpack Debian packages of suite $1 into folder $2 (once).
unpack() {
  local suite=$1 root=$2 work
  shift 2
  [ -e "$root/.done" ] && return 0
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$work/sources.list"
  local apt=(apt-get -qq -o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
             -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root)
  "${apt[@]}" update
  (cd "$work/debs" && "${apt[@]}" download "$@")
  rm -rf "$root" && mkdir -p "$root"
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
  touch "$root/.done" && rm -rf "$work"
}

install_packages() {
  unpack sid "$CACHE/root" "${PACKAGES[@]}"
  # Debian 13's buildx 0.13, which compose 2.40 refuses: for the test of that one-line error
  unpack trixie "$CACHE/trixie" docker-buildx
  echo "installed: $("$CACHE/root/usr/sbin/dockerd" --version)"
}

# The environment a command needs to use engine $1 (the CLI's plugins come from its config dir).
engine_env() {
  echo "DOCKER_HOST=unix://$RUN/$1/docker.sock"
  echo "DOCKER_CONFIG=$RUN/$1/config"
}

running() { [ -S "$RUN/$1/docker.sock" ] && env $(engine_env "$1") docker version >/dev/null 2>&1; }

# A registry on the namespace's own 127.0.0.1:5000, as scripts/setup.sh starts on the host's.
registry() {
  local name=$1 dir="$RUN/$1"
  command -v docker-registry >/dev/null || return 0
  nsenter --net="/run/netns/ct-$name" curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && return 0
  cat >"$dir/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YAML
  nohup nsenter --net="/run/netns/ct-$name" docker-registry serve "$dir/registry.yml" \
    >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 30); do
    nsenter --net="/run/netns/ct-$name" curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$name: the registry did not answer (log: $dir/registry.log)"
}

# Engine $1's containerd, started as a system's containerd service is (dockerd is given its
# socket), its CRI plugins off: containerd 2's CRI image service walks every snapshot every 10 s,
# which took a core of CPU under the engine tests; dockerd's own containerd turns only the old
# CRI plugin off.
containerd_up() {
  local name=$1 dir="$RUN/$1/containerd" root="$CACHE/root"
  if [ -s "$dir/containerd.pid" ] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; then
    return 0
  fi
  mkdir -p "$dir"
  cat >"$dir/containerd.toml" <<TOML
version = 2
root = "$RUN/$name/data/containerd/daemon"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
[grpc]
  address = "$dir/containerd.sock"
[debug]
  address = "$dir/debug.sock"
TOML
  rm -f "$dir/containerd.sock"
  PATH="$root/usr/sbin:$root/usr/bin:$PATH" nohup nsenter --net="/run/netns/ct-$name" \
    containerd --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 &
  echo $! >"$dir/containerd.pid"
  for _ in $(seq 40); do [ -S "$dir/containerd.sock" ] && return 0; sleep 0.25; done
  tail -20 "$dir/containerd.log" >&2
  die "$name: containerd did not start (log above)"
}

start() {
  local name=$1 dir="$RUN/$1" root="$CACHE/root" snapshotter=false
  # the daemons' working directory: BuildKit runs git there (a restart from a test's temporary
  # folder left the engine in a folder that was removed, and every git context failed)
  cd /
  case $name in containerd*) snapshotter=true ;; esac
  if running "$name"; then registry "$name"; echo "$name: running"; return 0; fi
  command -v runc >/dev/null || die "runc is missing (apt-get install runc)"
  mkdir -p "$dir/config/cli-plugins" "$dir/data" "$dir/exec"
  if [ "$name" = small ] && ! mountpoint -q "$dir/data"; then
    mount -t tmpfs -o "size=${SMALL_SIZE:-300m}" tmpfs "$dir/data"
  fi
  cp "$root/usr/libexec/docker/cli-plugins/docker-compose" "$root/usr/libexec/docker/cli-plugins/docker-buildx" "$dir/config/cli-plugins/"
  echo '{}' >"$dir/config/config.json"
  cat >"$dir/daemon.json" <<JSON
{"features": {"containerd-snapshotter": $snapshotter}, "ip6tables": false}
JSON
  ip netns list | grep -qx "ct-$name\( .*\)\?" || ip netns add "ct-$name"
  ip netns exec "ct-$name" ip link set lo up
  containerd_up "$name"
  # nsenter, not 'ip netns exec': that remounts /sys and hides the cgroup mounts
  PATH="$root/usr/sbin:$root/usr/bin:$PATH" nohup nsenter --net="/run/netns/ct-$name" \
    dockerd --config-file "$dir/daemon.json" -H "unix://$dir/docker.sock" \
    --containerd "$dir/containerd/containerd.sock" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 60); do running "$name" && break; sleep 1; done
  running "$name" || { tail -20 "$dir/dockerd.log" >&2; die "$name: dockerd did not start (log above)"; }
  registry "$name"
  bases "$name"
  printf '%s: engine %s, store %s, %s, %s\n' "$name" \
    "$(env $(engine_env "$name") docker version --format '{{.Server.Version}}')" \
    "$([ "$snapshotter" = true ] && echo containerd || echo classic)" \
    "$(env $(engine_env "$name") docker buildx version | cut -d' ' -f1,2)" \
    "$(env $(engine_env "$name") docker compose version --short)"
}

# The base images from the machine's engine, each one NAME lacks.
bases() {
  local name=$1 image wanted=("${BASES[@]}")
  [ "$name" = small ] && wanted=("${BASES[0]}")  # its disk is for filling, not for python
  for image in "${wanted[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || continue
    env $(engine_env "$name") docker image inspect "$image" >/dev/null 2>&1 && continue
    docker save "$image" | env $(engine_env "$name") docker load -q >/dev/null
    echo "$name: $image restored"
  done
}

stop() {
  local name=$1 dir="$RUN/$1" pid
  if [ -s "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ -s "$dir/registry.pid" ]; then kill "$(cat "$dir/registry.pid")" 2>/dev/null || true; rm -f "$dir/registry.pid"; fi
  if [ -s "$dir/containerd/containerd.pid" ]; then
    pid=$(cat "$dir/containerd/containerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/containerd/containerd.pid"
  fi
  # leftover shims of this engine's containerd, found by its socket path
  for pid in $(pgrep -f -- "-address $dir/(exec|containerd)/" || true); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns delete "ct-$name" 2>/dev/null || true
  mountpoint -q "$dir/exec/netns" 2>/dev/null && umount -l "$dir/exec/netns" || true
  if [ "$name" = small ] && mountpoint -q "$dir/data"; then
    umount -l "$dir/data" && rm -rf "$dir"
  fi
  echo "$name: stopped"
}

# Stop engine $1's dockerd alone (signal $2) and start it again: namespace, registry and data
# stay, so a process inside the namespace reaches the engine again when it is back.
restart() {
  local name=$1 signal=$2 dir="$RUN/$1" pid
  [ -s "$dir/dockerd.pid" ] || die "$name is not running (scripts/engines.sh up $name)"
  pid=$(cat "$dir/dockerd.pid")
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && die "$name: dockerd $pid did not stop"
  if [ "$signal" = KILL ]; then  # its containerd too, as after a crash (start starts it again)
    for pid in $(pgrep -f -- "containerd --config $dir/(exec|containerd)/" || true); do kill -9 "$pid" 2>/dev/null || true; done
  fi
  rm -f "$dir/dockerd.pid"
  start "$name"
}

names() { [ $# -gt 0 ] && echo "$@" || echo "${ALL[@]}"; }

command=${1:-}
shift || true
case "$command" in
  up)
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
    install_packages
    for name in $(names "$@"); do
      [[ " ${ALL[*]} ${EXTRA[*]} " == *" $name "* ]] || die "unknown engine '$name' (engines: ${ALL[*]} ${EXTRA[*]})"
      start "$name"
    done ;;
  down) for name in $(names "$@"); do stop "$name"; done ;;
  restart)
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
    signal=TERM
    [ "${1:-}" = --kill ] && { signal=KILL; shift; }
    [ $# = 1 ] || die "usage: engines.sh restart [--kill] NAME"
    [[ " ${ALL[*]} " == *" $1 "* ]] || die "unknown engine '$1' (engines: ${ALL[*]})"
    restart "$1" "$signal" ;;
  list) for name in "${ALL[@]}"; do running "$name" && echo "$name"; done; true ;;
  env) [ $# = 1 ] || die "usage: engines.sh env NAME"; engine_env "$1" | sed 's/^/export /' ;;
  images)
    [ $# = 1 ] || die "usage: engines.sh images NAME"
    running "$1" || die "$1 is not running (scripts/engines.sh up $1)"
    bases "$1" ;;
  run)
    [ $# -ge 2 ] || die "usage: engines.sh run NAME CMD..."
    name=$1; shift
    running "$name" || die "$name is not running (scripts/engines.sh up $name)"
    exec nsenter --net="/run/netns/ct-$name" env $(engine_env "$name") ENGINE_NAME="$name" \
      ENGINE_OLD_BUILDX="$CACHE/trixie/usr/libexec/docker/cli-plugins/docker-buildx" "$@" ;;
  *) die "usage: engines.sh up|down|restart|list|env|images|run [NAME...] (engines: ${ALL[*]})" ;;
esac
