#!/usr/bin/env bash
# A local Kindling cluster on this machine, every process on loopback, for trying cluster mode and
# for its tests:
#   bash scripts/cluster.sh up DIR [--workers N] [--frontends N]
#   bash scripts/cluster.sh down DIR
# `up` starts a 3-member etcd, one frontend node (the Lambda API and the chunk server its workers
# load images from), 3 assignment nodes (every partition: a leader and two followers) and N worker
# nodes (default 2), each a kindlingd with its own data dir under DIR; it returns once every worker
# has joined the fleet and every partition has a leader, and writes DIR/cluster.json:
#   {"etcd": [{"pid", "url"}], "nodes": [{"id", "roles", "pid", "url"}], "credentials": PATH}
# KINDLING_CHUNK_SERVER=URL makes every node use that chunk server (default: the frontend's own);
# KINDLING_PARTITIONS sets the partition count (default 16);
# KINDLING_CLUSTER_ARGS adds flags to every kindlingd.
# `down` stops everything `up` started (SIGTERM, then SIGKILL after 20 s) and checks that no
# process, mount or cgroup of the cluster is left. docs/cluster.md describes the roles and flags.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KINDLINGD=${KINDLINGD:-$ROOT/build/src/bin/kindlingd}

usage() { echo "usage: $0 up DIR [--workers N] [--frontends N] | down DIR" >&2; exit 2; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to $2 seconds for command $1 to succeed.
wait_for() { local deadline=$((SECONDS + $2)); until eval "$1" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || return 1; sleep 0.2; done; }

up() {
  local dir=$1; shift
  local workers=2 frontends=1 partitions=${KINDLING_PARTITIONS:-16}
  while (($#)); do
    case $1 in
      --workers) workers=$2; shift 2 ;;
      --frontends) frontends=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  if ((frontends != 1)); then
    echo "cluster.sh: this version runs one frontend node (function metadata is not shared through etcd yet; see docs/cluster.md)" >&2
    exit 2
  fi
  [[ -x $KINDLINGD ]] || bash scripts/build.sh
  command -v etcd >/dev/null || { echo "cluster.sh: etcd not found (apt-get install etcd-server)" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 0711 "$dir"
  [[ -e $dir/pids ]] && { echo "cluster.sh: $dir already holds a cluster (run down first)" >&2; exit 1; }
  : >"$dir/pids"

  # etcd: three members.
  local names=(e0 e1 e2) initial="" etcd_urls=() etcd_json=""
  local -a client_ports peer_ports
  for i in 0 1 2; do client_ports[i]=$(free_port); peer_ports[i]=$(free_port); done
  for i in 0 1 2; do initial+="${initial:+,}${names[i]}=http://127.0.0.1:${peer_ports[i]}"; done
  for i in 0 1 2; do
    local url=http://127.0.0.1:${client_ports[i]}
    etcd --name "${names[i]}" --data-dir "$dir/etcd/${names[i]}" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "http://127.0.0.1:${peer_ports[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[i]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --heartbeat-interval 50 --election-timeout 500 >"$dir/etcd-${names[i]}.log" 2>&1 &
    echo "etcd $! $url" >>"$dir/pids"
    etcd_urls+=("$url")
    etcd_json+="${etcd_json:+, }{\"pid\": $!, \"url\": \"$url\"}"
  done
  local etcd_list
  etcd_list=$(IFS=,; echo "${etcd_urls[*]}")
  for url in "${etcd_urls[@]}"; do
    wait_for "curl -sf -m 1 $url/health | grep -q true" 30 || fail "$dir" "etcd at $url did not start" /dev/null
  done

  # The cluster key every node proves itself with.
  [[ -s $dir/cluster-key ]] || (umask 077; /usr/bin/python3 -c 'import secrets; print(secrets.token_urlsafe(36))' >"$dir/cluster-key")

  local nodes_json=""
  start_node() {  # id roles port extra-args...
    local id=$1 roles=$2 port=$3; shift 3
    mkdir -p "$dir/$id"
    "$KINDLINGD" --role "$roles" --node-id "$id" --listen "127.0.0.1:$port" --data-dir "$dir/$id" \
      --etcd "$etcd_list" --cluster-key-file "$dir/cluster-key" "$@" >"$dir/$id.log" 2>&1 &
    echo "node $! http://127.0.0.1:$port $id" >>"$dir/pids"
    local roles_json
    roles_json=$(echo "$roles" | sed 's/\([a-z]*\)/"\1"/g; s/,/, /g')
    nodes_json+="${nodes_json:+, }{\"id\": \"$id\", \"roles\": [$roles_json], \"pid\": $!, \"url\": \"http://127.0.0.1:$port\"}"
  }

  local fport chunk_url=${KINDLING_CHUNK_SERVER:-} chunk_args=()
  fport=$(free_port)
  if [[ -z $chunk_url ]]; then
    local chunk_port
    chunk_port=$(free_port)
    chunk_url=http://127.0.0.1:$chunk_port
    chunk_args=(--chunk-listen "127.0.0.1:$chunk_port")
  else
    chunk_args=(--chunk-server "$chunk_url")
  fi
  start_node frontend-1 frontend "$fport" "${chunk_args[@]}" ${KINDLING_CLUSTER_ARGS:-}
  wait_for "grep -q 'joined the cluster' '$dir/frontend-1.log'" 60 ||
    fail "$dir" "frontend-1 did not start:" "$dir/frontend-1.log"
  for a in 1 2 3; do
    start_node "assignment-$a" assignment "$(free_port)" --partitions "$partitions" ${KINDLING_CLUSTER_ARGS:-}
  done
  for ((w = 1; w <= workers; w++)); do
    start_node "worker-$w" worker "$(free_port)" --chunk-server "$chunk_url" ${KINDLING_CLUSTER_ARGS:-}
  done
  for ((w = 1; w <= workers; w++)); do
    wait_for "grep -q 'worker worker-$w joined' '$dir/frontend-1.log'" 60 ||
      fail "$dir" "worker-$w did not join:" "$dir/worker-$w.log"
  done
  # Serving: every partition has a leader that took it over, and leadership has spread over the
  # three assignment nodes (no node leads more than its share).
  wait_for "((\$(led_partitions '$dir') == $partitions))" 60 ||
    fail "$dir" "not every partition got a leader:" "$dir/assignment-1.log"
  wait_for "spread '${etcd_urls[0]}' $partitions 3" 60 ||
    fail "$dir" "partition leadership did not spread:" "$dir/assignment-1.log"
  local kind pid url id
  while read -r kind pid url id; do
    running "$pid" || fail "$dir" "${id:-etcd $url} exited:" "$dir/${id:-frontend-1}.log"
  done <"$dir/pids"
  cat >"$dir/cluster.json" <<EOF
{"etcd": [$etcd_json],
 "nodes": [$nodes_json],
 "credentials": "$dir/frontend-1/credentials",
 "cluster_key": "$dir/cluster-key"}
EOF
  echo "cluster.sh: up: frontend http://127.0.0.1:$fport, 3 assignment nodes ($partitions partitions), $workers worker(s), etcd $etcd_list; $dir/cluster.json"
}

# How many distinct partitions the assignment nodes of cluster $1 have taken over (ever).
led_partitions() {
  cat "$1"/assignment-*.log 2>/dev/null | grep -o 'leads partition [0-9]*' | sort -u | wc -l
}

# True when, in the etcd at $1, each of the $2 partitions has a leader and none of the $3 nodes
# leads more than ceil($2 / $3) of them (the leader: the key with the lowest create revision).
spread() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import base64, json, sys, urllib.request
url, partitions, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefix = b"/kindling/assignment/partitions/"
body = json.dumps({"key": base64.b64encode(prefix).decode(),
                   "range_end": base64.b64encode(prefix[:-1] + b"0").decode()}).encode()
kvs = json.load(urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/range", data=body), timeout=5)).get("kvs", [])
best = {}
for kv in kvs:
    p, node = base64.b64decode(kv["key"]).decode()[len(prefix):].split("/", 1)
    rev = int(kv["create_revision"])
    if p not in best or rev < best[p][0]:
        best[p] = (rev, node)
leads = {}
for rev, node in best.values():
    leads[node] = leads.get(node, 0) + 1
share = -(-partitions // nodes)
sys.exit(0 if len(best) == partitions and len(leads) == nodes and max(leads.values()) <= share else 1)
PY
}

# Reports why `up` failed (with the log's tail), stops what it started, exits 1.
fail() {
  echo "cluster.sh: $2" >&2
  tail -5 "$3" >&2
  down "$1" >/dev/null 2>&1 || true
  exit 1
}

down() {
  local dir=$1
  [[ -e $dir/pids ]] || { echo "cluster.sh: no cluster in $dir" >&2; return 0; }
  dir=$(cd "$dir" && pwd)
  # Nodes first (frontends before workers, as listed), then etcd.
  local pids=()
  while read -r kind pid _; do [[ $kind == node ]] && pids+=("$pid"); done <"$dir/pids"
  stop_all "${pids[@]}"
  pids=()
  while read -r kind pid _; do [[ $kind == etcd ]] && pids+=("$pid"); done <"$dir/pids"
  stop_all "${pids[@]}"
  # A node that was killed (not stopped) leaves its sandboxes: sweep them as its next start would.
  while read -r kind pid _ id; do [[ $kind == node ]] && sweep_instance "$dir/$id"; done <"$dir/pids"
  rm -f "$dir/pids"
  local left
  left=$(grep -c " $dir/" /proc/mounts || true)
  if ((left > 0)); then
    echo "cluster.sh: $left mount(s) left under $dir; detaching them" >&2
    grep " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  fi
  echo "cluster.sh: down"
}

# Kills every process in the cgroups of the kindlingd whose data dir is $1 and removes them
# (kindlingd names its cgroups kindling-<10 hex of sha256(data dir)>).
sweep_instance() {
  local instance d
  instance="kindling-$(printf %s "$(realpath "$1")" | sha256sum | cut -c1-10)"
  for d in /sys/fs/cgroup/*/"$instance" /sys/fs/cgroup/unified/"$instance"; do
    [[ -d $d ]] || continue
    find "$d" -name freezer.state -exec sh -c 'echo THAWED > "$1"' _ {} \; 2>/dev/null || true
    find "$d" -name cgroup.freeze -exec sh -c 'echo 0 > "$1"' _ {} \; 2>/dev/null || true
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  local deadline=$((SECONDS + 5))
  for d in /sys/fs/cgroup/*/"$instance" /sys/fs/cgroup/unified/"$instance"; do
    [[ -d $d ]] || continue
    until find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; [[ ! -d $d ]] || ((SECONDS >= deadline)); do
      sleep 0.1
    done
  done
}

# True while process $1 runs (a zombie, killed but not yet reaped by its parent, does not).
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

stop_all() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  for pid in "$@"; do
    while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    running "$pid" && kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do while running "$pid"; do sleep 0.1; done; done
}

(($# >= 2)) || usage
case $1 in
  up) up "${@:2}" ;;
  down) down "$2" ;;
  *) usage ;;
esac
