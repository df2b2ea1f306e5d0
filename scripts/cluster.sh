#!/usr/bin/env bash
# A three-node Docker Swarm on one machine: three Engine 28.5 daemons (scripts/engines.sh's
# packages), each in its own network namespace, joined as three managers, with a registry between
# them. For the multi-node deploy tests; nothing outside its own namespaces and folders is touched.
#
#   scripts/cluster.sh up      install (once, through engines.sh), start, form the swarm
#   scripts/cluster.sh down    stop everything it started, by PID and by name
#   scripts/cluster.sh status  one line per node, as the swarm sees it
#   scripts/cluster.sh env     export lines for a shell to use the cluster (node 1 a manager)
#   scripts/cluster.sh kill N  kill -9 everything node N runs (a machine lost); 'up' restarts it
#
# Network (all inside 10.231.0.0/16): a hub namespace holds the bridge (10.231.0.1, also the
# registry at 10.231.0.1:5000); nodes sw1..3 are 10.231.0.11-13 on veths into it; the host
# reaches the hub through a veth of its own (10.231.0.254). Each engine's docker0 and address
# pools stay inside the range. Each node's socket: /run/compose-tasks-cluster/swN/docker.sock.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cd /  # the daemons' working directory: never a caller's folder that may be removed
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/compose-tasks/engines"
ROOT="$CACHE/root"
RUN=/run/compose-tasks-cluster
NODES=(1 2 3)
HUB=ct-hub
BRIDGE=cthub0
NET=10.231.0
REGISTRY=$NET.1:5000
BASES=(busybox:1.36)

die() { echo "cluster: $*" >&2; exit 1; }
node_ip() { echo "$NET.$((10 + $1))"; }
sock() { echo "$RUN/sw$1/docker.sock"; }
on() { local n=$1; shift; env DOCKER_HOST="unix://$(sock "$n")" DOCKER_CONFIG="$RUN/config" docker "$@"; }
alive() { [ -S "$(sock "$1")" ] && on "$1" version >/dev/null 2>&1; }

network() {
  ip netns list | grep -qx "$HUB\( .*\)\?" || ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  if ! ip -n "$HUB" link show "$BRIDGE" >/dev/null 2>&1; then
    ip -n "$HUB" link add "$BRIDGE" type bridge
    ip -n "$HUB" addr add "$NET.1/24" dev "$BRIDGE"
    ip -n "$HUB" link set "$BRIDGE" up
  fi
  if ! ip link show ct-host >/dev/null 2>&1; then
    ip link add ct-host type veth peer name ct-host-p netns "$HUB"
    ip -n "$HUB" link set ct-host-p master "$BRIDGE" up
    ip addr add "$NET.254/24" dev ct-host
    ip link set ct-host up
  fi
  for n in "${NODES[@]}"; do
    ip netns list | grep -qx "ct-sw$n\( .*\)\?" || ip netns add "ct-sw$n"
    ip -n "ct-sw$n" link set lo up
    if ! ip -n "ct-sw$n" link show eth0 >/dev/null 2>&1; then
      ip link add "ct-sw$n" type veth peer name eth0 netns "ct-sw$n"
      ip link set "ct-sw$n" netns "$HUB"
      ip -n "$HUB" link set "ct-sw$n" master "$BRIDGE" up
      ip -n "ct-sw$n" addr add "$(node_ip "$n")/24" dev eth0
      ip -n "ct-sw$n" link set eth0 up
      ip -n "ct-sw$n" route add default via "$NET.1"
    fi
  done
}

registry() {
  command -v docker-registry >/dev/null || die "docker-registry is missing (apt-get install docker-registry)"
  curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && return 0
  mkdir -p "$RUN/registry"
  cat >"$RUN/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $RUN/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
YAML
  nohup nsenter --net="/run/netns/$HUB" docker-registry serve "$RUN/registry.yml" \
    >"$RUN/registry.log" 2>&1 &
  echo $! >"$RUN/registry.pid"
  for _ in $(seq 30); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && return 0; sleep 0.3; done
  die "the registry did not answer (log: $RUN/registry.log)"
}

engine() {
  local n=$1 dir="$RUN/sw$1"
  alive "$n" && return 0
  mkdir -p "$dir/data" "$dir/exec"
  cat >"$dir/daemon.json" <<JSON
{"insecure-registries": ["$REGISTRY"], "ip6tables": false, "bip": "10.231.$((1 + n)).1/24",
 "default-address-pools": [{"base": "10.231.$((16 * n)).0/20", "size": 24}]}
JSON
  # nsenter, not 'ip netns exec' (that hides the cgroup mounts); own hostname: the node's name
  PATH="$ROOT/usr/sbin:$ROOT/usr/bin:$PATH" nohup nsenter --net="/run/netns/ct-sw$n" \
    unshare --uts --mount --propagation slave sh -c "hostname sw$n; exec dockerd \
    --config-file $dir/daemon.json -H unix://$dir/docker.sock --data-root $dir/data \
    --exec-root $dir/exec --pidfile $dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 &
  # up to a minute: a node back from a kill rejoins its raft first, slower on a busy machine
  for _ in $(seq 120); do alive "$n" && break; sleep 0.5; done
  alive "$n" || { tail -20 "$dir/dockerd.log" >&2; die "sw$n: dockerd did not start (log above)"; }
  for image in "${BASES[@]}"; do
    on "$n" image inspect "$image" >/dev/null 2>&1 && continue
    docker image inspect "$image" >/dev/null 2>&1 || die "base image $image is missing on the host (scripts/base-images.sh)"
    docker save "$image" | on "$n" load -q >/dev/null
  done
}

swarm() {
  local state token
  state=$(on 1 info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" != active ]; then
    on 1 swarm init --advertise-addr "$(node_ip 1)" --default-addr-pool 10.231.128.0/18 >/dev/null
  fi
  token=$(on 1 swarm join-token -q manager)
  for n in "${NODES[@]:1}"; do
    state=$(on "$n" info --format '{{.Swarm.LocalNodeState}}')
    [ "$state" = active ] && continue
    on "$n" swarm join --advertise-addr "$(node_ip "$n")" --token "$token" "$(node_ip 1):2377" >/dev/null
  done
  for _ in $(seq 120); do
    [ "$(on 1 node ls --format '{{.Status}}' | grep -c Ready)" = "${#NODES[@]}" ] && return 0
    sleep 0.5
  done
  die "the swarm did not report ${#NODES[@]} ready nodes"
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  [ -x "$ROOT/usr/sbin/dockerd" ] || bash "$HERE/engines.sh" up >/dev/null
  command -v runc >/dev/null || die "runc is missing (apt-get install runc)"
  mkdir -p "$RUN/config/cli-plugins"
  cp "$ROOT/usr/libexec/docker/cli-plugins/docker-buildx" "$ROOT/usr/libexec/docker/cli-plugins/docker-compose" "$RUN/config/cli-plugins/"
  [ -e "$RUN/config/config.json" ] || echo '{}' >"$RUN/config/config.json"
  network
  registry
  local pids=() n
  for n in "${NODES[@]}"; do engine "$n" & pids+=($!); done
  wait "${pids[@]}"  # only these: the registry runs on in the background
  for n in "${NODES[@]}"; do alive "$n" || die "sw$n did not start (log: $RUN/sw$n/dockerd.log)"; done
  swarm
  status
}

# Every process node $1 runs: its engine, containerd, shims and the containers' own processes
# (found by the node's container ids in its cgroups: cgroup v1 and v2, cgroupfs driver).
reap() {
  local dir="$RUN/sw$1" id pid procs
  for pid in $(pgrep -f -- "$dir/" || true); do kill -9 "$pid" 2>/dev/null || true; done
  for id in $(ls "$dir/data/containers" 2>/dev/null || true); do
    for procs in /sys/fs/cgroup/pids/docker/"$id"/cgroup.procs /sys/fs/cgroup/docker/"$id"/cgroup.procs; do
      [ -r "$procs" ] || continue
      for pid in $(cat "$procs"); do kill -9 "$pid" 2>/dev/null || true; done
    done
  done
}

stop_engine() {
  local n=$1 dir="$RUN/sw$1" pid
  if [ -s "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$dir/dockerd.pid"
  fi
  reap "$n"
}

down() {
  local pids=() n
  for n in "${NODES[@]}"; do stop_engine "$n" & pids+=($!); done
  wait "${pids[@]}"
  for n in "${NODES[@]}"; do
    for mount in $(grep -o " $RUN/sw$n/[^ ]*" /proc/mounts | sort -r || true); do umount -l "$mount" 2>/dev/null || true; done
    ip netns delete "ct-sw$n" 2>/dev/null || true
  done
  if [ -s "$RUN/registry.pid" ]; then kill "$(cat "$RUN/registry.pid")" 2>/dev/null || true; rm -f "$RUN/registry.pid"; fi
  ip link delete ct-host 2>/dev/null || true
  ip netns delete "$HUB" 2>/dev/null || true
  rm -rf "$RUN"
  echo "cluster: stopped"
}

status() {
  alive 1 || die "node 1 is not running (scripts/cluster.sh up)"
  on 1 node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}'
}

command=${1:-}
shift || true
case "$command" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "export DOCKER_HOST=unix://$(sock 1)"; echo "export DOCKER_CONFIG=$RUN/config"
       echo "export CLUSTER_REGISTRY=$REGISTRY" ;;
  kill) [ $# = 1 ] && [[ " ${NODES[*]} " == *" $1 "* ]] || die "usage: cluster.sh kill N (N: ${NODES[*]})"
        rm -f "$RUN/sw$1/dockerd.pid"; reap "$1"; echo "sw$1: killed (engine, containerd and containers)" ;;
  *) die "usage: cluster.sh up|down|status|env|kill N" ;;
esac
