#!/usr/bin/env bash
# setup-swarm-cluster.sh: a real multi-node Docker Swarm on this one machine, for tests of kernels
# as Swarm service tasks (issue 12), isolated from the machine's main Docker engine.
#
# Called by tests/swarm_cluster.py (SwarmCluster.up/down, used by tests/test_swarm_cluster.py)
# and by hand; needs root and the main engine (scripts/ensure-engine.sh). Safe to run again: a
# second run only checks and repairs (a few seconds when the cluster is up).
#
#   setup-swarm-cluster.sh [IMAGE...]     bring the cluster up (default IMAGE:
#                                         mlcontainer-test/base:bookworm), then print on stdout:
#       SWARM_MANAGER=unix:///run/mlc-swarm/mlc-swarm-manager/docker.sock   the manager's API (a DOCKER_HOST)
#       SWARM_SHARED=/srv/mlc-swarm-shared            a host folder, same path on every node
#       SWARM_NETWORK=mlc-swarm-net                   the nodes' network on the main engine
#       SWARM_NODE=NAME ROLE unix://SOCKET GPU-IDS    one line per node (GPU-IDS "-" if none)
#   setup-swarm-cluster.sh --down [--purge]          remove all it made (containers, volumes,
#                                         network, shared folder, cgroups); --purge also the
#                                         node image and its cached root file system
#
# The main engine is never put into swarm mode: every node is a container of the main engine
# running its own dockerd (Debian's docker.io), so the whole cluster lives in containers (a second
# dockerd as a host process may delete the host's docker0, see tests/disposable_engine.py):
#   * image mlcontainer-test/swarm-node:bookworm: Debian bookworm minbase + docker.io, built once
#     offline with mmdebstrap (rootfs cached in $MLCONTAINER_TEST_CACHE, like build-test-images.sh)
#     and `docker import`;
#   * network mlc-swarm-net (bridge, $MLC_SWARM_SUBNET, default 10.215.0.0/24): manager .2,
#     workers .3, .4, ... (fixed addresses: Swarm keeps them across node restarts);
#   * containers mlc-swarm-manager and mlc-swarm-worker-1..N ($MLC_SWARM_WORKERS, default 2),
#     hostname = name, capabilities all but SYS_RESOURCE (--privileged fails on this host kind),
#     data root in a volume of its own (NAME-data: ext4, not the container's overlay file system,
#     so the inner dockerd uses overlay2: a task starts in ~0.5 s, with vfs ~5-15 s as each
#     container copies its image; MLC_SWARM_STORAGE=vfs picks vfs),
#     no seccomp/AppArmor, the host's /sys/fs/cgroup (inner containers go under
#     /sys/fs/cgroup/*/mlc-swarm/NODE), tmpfs /run; dockerd listens on unix sockets only: its
#     own, and one in the host folder $MLC_SWARM_API_DIR/NODE (default /run/mlc-swarm/NODE)
#     that is root's and the host's docker group's (0660), like the host engine's socket. No
#     engine API on TCP: a node's API is root on that node, and a TCP port on the nodes' network
#     would be open to every local user;
#   * $MLC_SWARM_SHARED (default /srv/mlc-swarm-shared) bind-mounted into every node at the same
#     path (a stand-in for NFS);
#   * `docker swarm init` on the manager (dispatcher heartbeat 2 s, so a stopped node is Down in
#     ~10 s; overlay pool 10.216.0.0/16), workers joined; node labels mlc.role=manager|worker and
#     mlc.gpu=fake on workers; fake GPUs as Swarm generic resources, $MLC_SWARM_GPUS (default 2)
#     per worker: dockerd --node-generic-resource NVIDIA-GPU=GPU-fake-w<i>-<j>;
#   * the IMAGEs copied from the main engine into every node's engine (docker save, then
#     docker load in the node), skipped where a node already holds the same image id.
# Everything made carries the label org.jupyter.mlcontainer.swarm-test=1; --down removes only
# what has it. Progress goes to stderr; only the lines above go to stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# shellcheck source=include/node-rootfs.sh
source "$HERE/include/node-rootfs.sh"
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/mlcontainer-test
else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/mlcontainer-test; fi
readonly CACHE=${MLCONTAINER_TEST_CACHE:-$default_cache}
readonly MIRROR=${MLCONTAINER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly NODE_IMAGE=mlcontainer-test/swarm-node:bookworm
readonly NODE_ROOTFS="$CACHE/swarm-node-bookworm.tar"
readonly NODE_PACKAGES=docker.io,iproute2,iptables,ca-certificates,procps
readonly LABEL=org.jupyter.mlcontainer.swarm-test
readonly NETWORK=mlc-swarm-net
readonly SUBNET=${MLC_SWARM_SUBNET:-10.215.0.0/24}
readonly API_DIR=${MLC_SWARM_API_DIR:-/run/mlc-swarm}
readonly SHARED=${MLC_SWARM_SHARED:-/srv/mlc-swarm-shared}
readonly WORKERS=${MLC_SWARM_WORKERS:-2}
readonly GPUS=${MLC_SWARM_GPUS:-2}
readonly WAIT=${MLC_SWARM_WAIT:-90}
readonly STORAGE=${MLC_SWARM_STORAGE:-overlay2}
readonly MANAGER=mlc-swarm-manager
readonly CGROUP_PARENT=mlc-swarm
readonly PREFIX=${SUBNET%.*/*}  # 10.215.0.0/24 -> 10.215.0
readonly GATEWAY=$PREFIX.1

say() { printf 'setup-swarm-cluster: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
elapsed() { printf '%d s' "$(( SECONDS - $1 ))"; }

[[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.0/24$ ]] || die "MLC_SWARM_SUBNET must be a /24 (got '$SUBNET')"
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || die "MLC_SWARM_WORKERS must be 1..99 (got '$WORKERS')"
[[ "$GPUS" =~ ^[0-9]$ ]] || die "MLC_SWARM_GPUS must be 0..9 (got '$GPUS')"
[[ "$STORAGE" =~ ^(overlay2|vfs)$ ]] || die "MLC_SWARM_STORAGE must be overlay2 or vfs (got '$STORAGE')"
[[ "$SHARED" == /* ]] || die "MLC_SWARM_SHARED must be an absolute path (got '$SHARED')"
[[ "$API_DIR" == /* ]] || die "MLC_SWARM_API_DIR must be an absolute path (got '$API_DIR')"

WORKER_NAMES=()
for i in $(seq 1 "$WORKERS"); do WORKER_NAMES+=("mlc-swarm-worker-$i"); done
NODES=("$MANAGER" "${WORKER_NAMES[@]}")

node_ip() {  # NAME -> its fixed address on $NETWORK
  if [ "$1" = "$MANAGER" ]; then echo "$PREFIX.2"; else echo "$PREFIX.$(( ${1##*-} + 2 ))"; fi
}
node_gpus() {  # NAME -> comma list of its fake GPU ids (empty for the manager)
  [ "$1" = "$MANAGER" ] && return 0
  local i=${1##*-} j ids=()
  for (( j = 0; j < GPUS; j++ )); do ids+=("GPU-fake-w$i-$j"); done
  (IFS=,; echo "${ids[*]}")
}
ours() {  # KIND NAME: true when the main engine's KIND (container|volume|network) NAME is ours
  local labels=.Labels
  [ "$1" = container ] && labels=.Config.Labels
  [ "$(docker "$1" inspect --format "{{index $labels \"$LABEL\"}}" "$2" 2>/dev/null || true)" = 1 ]
}
exists() { docker "$1" inspect "$2" >/dev/null 2>&1; }
in_node() { local node=$1; shift; docker exec "$node" docker "$@"; }

[ "$(id -u)" -eq 0 ] || die "needs root (node containers get almost all capabilities and the host's cgroups)"
"$HERE/ensure-engine.sh"
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ] \
  || say "note: the main engine is in swarm mode; this script neither uses nor changes that"
mkdir -p "$CACHE"
# One run at a time (a second one waits instead of racing on the same containers).
exec 9>"$CACHE/.swarm-cluster.lock"
if ! flock -n 9; then
  say "another setup-swarm-cluster.sh holds $CACHE/.swarm-cluster.lock; waiting for it ..."
  flock 9
fi

# ------------------------------------------------------------------------------------ --down
remove_cgroups() {
  # Inner containers' cgroups (dockerd --cgroup-parent /mlc-swarm/NODE) outlive a killed node.
  local dir
  for dir in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/"$CGROUP_PARENT"; do
    if [ -d "$dir" ]; then find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
}

if [ "${1:-}" = --down ]; then
  purge=0
  [ "${2:-}" = --purge ] && purge=1
  t0=$SECONDS
  for name in "${NODES[@]}" $(docker ps -aq --filter "label=$LABEL=1"); do
    if exists container "$name"; then
      ours container "$name" || die "container $name exists but was not made by this script; not touching it"
      docker rm -f -v "$name" >/dev/null && say "removed container $name"
    fi
  done
  for volume in $(docker volume ls -q --filter "label=$LABEL=1"); do
    docker volume rm "$volume" >/dev/null && say "removed volume $volume"
  done
  if exists network "$NETWORK"; then
    if ours network "$NETWORK"; then docker network rm "$NETWORK" >/dev/null && say "removed network $NETWORK"
    else say "network $NETWORK was not made by this script; left alone"; fi
  fi
  remove_cgroups
  if [ -e "$SHARED/.mlc-swarm-shared" ]; then
    rm -rf "$SHARED" && say "removed $SHARED"
  fi
  if [ -e "$API_DIR/.mlc-swarm-api" ]; then
    rm -rf "$API_DIR" && say "removed $API_DIR"
  fi
  if [ "$purge" = 1 ]; then
    if exists image "$NODE_IMAGE"; then docker rmi "$NODE_IMAGE" >/dev/null && say "removed image $NODE_IMAGE"; fi
    rm -f "$NODE_ROOTFS" && say "removed $NODE_ROOTFS"
  fi
  say "cluster down in $(elapsed "$t0")"
  exit 0
fi
[ "${1:-}" != --purge ] || die "--purge goes with --down"
case "${1:-}" in -*) die "unknown option $1 (usage: $0 [IMAGE...] | --down [--purge])" ;; esac

T_START=$SECONDS
IMAGES=("$@")
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=(mlcontainer-test/base:bookworm)
for image in "${IMAGES[@]}"; do
  exists image "$image" || die "$image is not in the main engine (scripts/build-test-images.sh builds the test images)"
done

# ------------------------------------------------------------------------------ node image
if exists image "$NODE_IMAGE"; then
  say "$NODE_IMAGE present"
else
  cached_rootfs bookworm "$NODE_PACKAGES" "$NODE_ROOTFS" "$MIRROR"
  t0=$SECONDS
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["dockerd"]' \
    --change 'LABEL org.opencontainers.image.title="Docker Swarm test node"' \
    --change 'LABEL org.opencontainers.image.description="jupyter-mlcontainer test image: Debian bookworm + docker.io, a Swarm node in a container"' \
    --change "LABEL org.opencontainers.image.created=\"$(date -u +%FT%TZ)\"" \
    --change "LABEL $LABEL=1" \
    --message "scripts/setup-swarm-cluster.sh: mmdebstrap bookworm + docker.io" \
    "$NODE_ROOTFS" "$NODE_IMAGE" >/dev/null
  say "imported $NODE_IMAGE in $(elapsed "$t0")"
fi

# ---------------------------------------------------------------------- network, shared folder
if exists network "$NETWORK"; then
  ours network "$NETWORK" || die "network $NETWORK exists but was not made by this script"
  have=$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NETWORK")
  [ "$have" = "$SUBNET" ] || die "network $NETWORK has subnet $have, not $SUBNET: run $0 --down first"
else
  docker network create --driver bridge --subnet "$SUBNET" --gateway "$GATEWAY" \
    --label "$LABEL=1" "$NETWORK" >/dev/null || die "could not create network $NETWORK ($SUBNET): set MLC_SWARM_SUBNET"
  say "created network $NETWORK ($SUBNET)"
fi
mkdir -p "$SHARED"
chmod 1777 "$SHARED"  # tasks may run as any uid (like /tmp)
touch "$SHARED/.mlc-swarm-shared"  # marks it as ours for --down
mkdir -p "$API_DIR"
chmod 0755 "$API_DIR"
touch "$API_DIR/.mlc-swarm-api"
# The nodes' API sockets: root's and the host's docker group's, as the host engine's socket.
SOCKET_GROUP=$(getent group docker | cut -d: -f3)
SOCKET_GROUP=${SOCKET_GROUP:-0}

# ------------------------------------------------------------------------- node containers
start_node_container() {  # NAME: create (or start) the node container
  local name=$1 ip gpus state
  ip=$(node_ip "$name")
  gpus=$(node_gpus "$name")
  if exists container "$name"; then
    ours container "$name" || die "container $name exists but was not made by this script"
    docker inspect --format '{{range .Mounts}}{{.Destination}} {{end}}' "$name" | grep -qw /mlc-api \
      || die "container $name was made by an older version of this script (engine API on TCP): run $0 --down first"
    mkdir -p "$API_DIR/$name"
    state=$(docker inspect --format '{{.State.Status}}' "$name")
    if [ "$state" != running ]; then
      docker start "$name" >/dev/null
      say "started $name (was $state)"
    fi
    return 0
  fi
  mkdir -p "$API_DIR/$name"
  chmod 0755 "$API_DIR/$name"
  local dockerd=(dockerd --storage-driver "$STORAGE" --host unix:///var/run/docker.sock
    --host unix:///mlc-api/docker.sock --group "$SOCKET_GROUP"
    --cgroup-parent "/$CGROUP_PARENT/$name" --log-level warn)
  local gpu
  if [ -n "$gpus" ]; then
    for gpu in ${gpus//,/ }; do dockerd+=(--node-generic-resource "NVIDIA-GPU=$gpu"); done
  fi
  docker volume create --label "$LABEL=1" "$name-data" >/dev/null
  docker run --detach --init --name "$name" --hostname "$name" --label "$LABEL=1" \
    --network "$NETWORK" --ip "$ip" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --volume "$name-data:/var/lib/docker" \
    --volume "$SHARED:$SHARED" \
    --volume "$API_DIR/$name:/mlc-api" \
    --tmpfs /run \
    "$NODE_IMAGE" "${dockerd[@]}" >/dev/null
  say "created $name ($ip${gpus:+, GPUs $gpus})"
}

wait_engine() {  # NAME: until the node's dockerd answers
  local name=$1 deadline=$((SECONDS + WAIT))
  until docker exec "$name" docker version >/dev/null 2>&1; do
    if [ "$(docker inspect --format '{{.State.Running}}' "$name")" != true ]; then
      docker logs --tail 20 "$name" >&2 || true
      die "$name exited while its dockerd started (logs above)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || { docker logs --tail 20 "$name" >&2 || true; die "$name: dockerd did not answer within $WAIT s"; }
    sleep 0.5
  done
}

t_nodes=$SECONDS
for name in "${NODES[@]}"; do start_node_container "$name"; done
for name in "${NODES[@]}"; do
  wait_engine "$name"
  driver=$(in_node "$name" info --format '{{.Driver}}')
  [ "$driver" = "$STORAGE" ] || die "$name runs storage driver $driver, not $STORAGE: run $0 --down first"
done
say "node engines answer ($(elapsed "$t_nodes"))"

# ----------------------------------------------------------------------------------- swarm
swarm_state() { docker exec "$1" docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}'; }

read -r mstate _ mcontrol <<<"$(swarm_state "$MANAGER")"
if [ "$mstate" = active ] && [ "$mcontrol" = true ]; then
  say "$MANAGER already manages a swarm"
else
  [ "$mstate" = inactive ] || die "$MANAGER is in swarm state '$mstate' (not a manager): run $0 --down first"
  in_node "$MANAGER" swarm init --advertise-addr "$(node_ip "$MANAGER")" \
    --listen-addr "$(node_ip "$MANAGER"):2377" --dispatcher-heartbeat 2s \
    --default-addr-pool 10.216.0.0/16 --task-history-limit 2 >/dev/null
  say "swarm initialised on $MANAGER"
fi
token=$(in_node "$MANAGER" swarm join-token -q worker)
known_ids=$(in_node "$MANAGER" node ls --format '{{.ID}}')

for name in "${WORKER_NAMES[@]}"; do
  read -r wstate wid _ <<<"$(swarm_state "$name")"
  if [ "$wstate" = active ] && grep -qx "$wid" <<<"$known_ids"; then
    continue
  fi
  if [ "$wstate" != inactive ]; then
    say "$name is in swarm state '$wstate' outside this swarm: leaving it"
    in_node "$name" swarm leave --force >/dev/null
  fi
  in_node "$name" swarm join --token "$token" --advertise-addr "$(node_ip "$name")" \
    "$(node_ip "$MANAGER"):2377" >/dev/null
  say "$name joined the swarm"
done

# Node entries left from earlier containers of the same name (e.g. after a volume was lost).
current_ids=" "
for name in "${NODES[@]}"; do current_ids+="$(swarm_state "$name" | cut -d' ' -f2) "; done
while read -r id host; do
  [ -n "$id" ] || continue
  if [[ "$current_ids" != *" $id "* ]]; then
    in_node "$MANAGER" node rm --force "$id" >/dev/null && say "removed stale node entry $id ($host)"
  fi
done <<<"$(in_node "$MANAGER" node ls --format '{{.ID}} {{.Hostname}}')"

deadline=$((SECONDS + WAIT))
while :; do
  ready=$(in_node "$MANAGER" node ls --format '{{.Hostname}} {{.Status}}' | awk '$2 == "Ready" {print $1}' | sort | tr '\n' ' ')
  want=$(printf '%s\n' "${NODES[@]}" | sort | tr '\n' ' ')
  [ "$ready" = "$want" ] && break
  [ "$SECONDS" -lt "$deadline" ] || { in_node "$MANAGER" node ls >&2; die "not all nodes Ready within $WAIT s (ready: $ready)"; }
  sleep 1
done
for name in "${NODES[@]}"; do
  if [ "$name" = "$MANAGER" ]; then
    in_node "$MANAGER" node update --label-add mlc.role=manager "$name" >/dev/null
  else
    in_node "$MANAGER" node update --label-add mlc.role=worker --label-add mlc.gpu=fake "$name" >/dev/null
  fi
done
say "swarm: ${#NODES[@]} nodes Ready ($(elapsed "$t_nodes") since the nodes were checked)"

# ---------------------------------------------------------------------------------- images
t0=$SECONDS
tmpdir=$(mktemp -d "$CACHE/.swarm-images.XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT
for image in "${IMAGES[@]}"; do
  id=$(docker image inspect --format '{{.Id}}' "$image")
  archive=
  for name in "${NODES[@]}"; do
    [ "$(in_node "$name" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)" = "$id" ] && continue
    if [ -z "$archive" ]; then
      archive="$tmpdir/image.tar"
      nice docker save --output "$archive" "$image"
    fi
    nice docker exec -i "$name" docker load --quiet <"$archive" >/dev/null
    [ "$(in_node "$name" image inspect --format '{{.Id}}' "$image")" = "$id" ] \
      || die "$image loaded into $name with another image id than the main engine's"
    say "loaded $image into $name"
  done
  rm -f "$tmpdir/image.tar"
done
say "images on every node ($(elapsed "$t0"))"

say "cluster up in $(elapsed "$T_START")"
echo "SWARM_MANAGER=unix://$API_DIR/$MANAGER/docker.sock"
echo "SWARM_SHARED=$SHARED"
echo "SWARM_NETWORK=$NETWORK"
for name in "${NODES[@]}"; do
  role=worker
  [ "$name" = "$MANAGER" ] && role=manager
  gpus=$(node_gpus "$name")
  echo "SWARM_NODE=$name $role unix://$API_DIR/$name/docker.sock ${gpus:--}"
done
