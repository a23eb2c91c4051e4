#!/usr/bin/env bash
# setup-slurm-cluster.sh: a real Slurm cluster on this one machine (issue 24), in containers of
# the main engine: a controller that is also the login node, and compute nodes running slurmd,
# with munge, a shared folder standing in for the cluster file system, stand-in GPU device nodes
# as gres, and Slurm's OCI container support (`--container BUNDLE`, run by crun rootless).
#
# Needs root and the main engine (scripts/ensure-engine.sh). Safe to run again: a second run
# only checks and repairs.
#
#   setup-slurm-cluster.sh            bring the cluster up, then print on stdout:
#       SLURM_LOGIN=mlc-slurm-ctl                 the login node's container (sbatch, squeue, scancel)
#       SLURM_SHARED=/srv/mlc-slurm-shared        a host folder, same path on every node
#       SLURM_NETWORK=mlc-slurm-net               the nodes' network on the main engine
#       SLURM_NODE=NAME IP GPU-COUNT              one line per compute node
#   setup-slurm-cluster.sh --down [--purge]       remove all it made; --purge also the node
#                                                 image and its cached root file system
#
# What it makes (everything carries the label org.jupyter.mlcontainer.slurm-test=1):
#   * image mlcontainer-test/slurm-node:trixie: Debian trixie minbase + Slurm 24.11 (slurmctld,
#     slurmd, slurmrestd, client), munge, crun, skopeo, umoci; built offline with mmdebstrap
#     (rootfs cached in $MLCONTAINER_TEST_CACHE) and `docker import`. Its munge.key is made at
#     build time, the same in every container of the image: the nodes trust each other.
#   * network mlc-slurm-net ($MLC_SLURM_SUBNET, default 10.217.0.0/24): controller .2, nodes
#     .3, .4, ...; a job's processes listen on their node's address (a rootless OCI bundle has
#     no network namespace of its own);
#   * containers mlc-slurm-ctl and mlc-slurm-n1..N ($MLC_SLURM_NODES, default 2): all
#     capabilities but SYS_RESOURCE, no seccomp/AppArmor, the host's cgroups (Slurm's
#     proctrack/cgroup: a signal reaches a containerised step exactly once), tmpfs /run;
#   * $MLC_SLURM_SHARED (default /srv/mlc-slurm-shared) at the same path on every node;
#   * the configuration in $MLC_SLURM_ETC (default /run/mlc-slurm/etc), mounted read-only at
#     /etc/slurm: slurm.conf, cgroup.conf, gres.conf (stand-in /dev/nvidiaN device nodes,
#     $MLC_SLURM_GPUS per node, default 2), oci.conf (crun, rootless, as the user);
#   * the users of $MLC_SLURM_USERS (default: mlctest and mlctest2 where they exist) with the
#     same uid and gid on every node: Slurm and munge enforce who owns which job.
# Progress goes to stderr; only the lines above go to stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# shellcheck source=include/node-rootfs.sh
source "$HERE/include/node-rootfs.sh"
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/mlcontainer-test
else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/mlcontainer-test; fi
readonly CACHE=${MLCONTAINER_TEST_CACHE:-$default_cache}
readonly MIRROR=${MLCONTAINER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly NODE_IMAGE=mlcontainer-test/slurm-node:trixie
readonly NODE_ROOTFS="$CACHE/slurm-node-trixie.tar"
readonly NODE_PACKAGES=slurmctld,slurmd,slurmrestd,slurm-client,munge,crun,skopeo,umoci,python3,procps,iproute2,ca-certificates
readonly LABEL=org.jupyter.mlcontainer.slurm-test
readonly NETWORK=mlc-slurm-net
readonly SUBNET=${MLC_SLURM_SUBNET:-10.217.0.0/24}
readonly SHARED=${MLC_SLURM_SHARED:-/srv/mlc-slurm-shared}
readonly ETC=${MLC_SLURM_ETC:-/run/mlc-slurm/etc}
readonly NODE_COUNT=${MLC_SLURM_NODES:-2}
readonly GPUS=${MLC_SLURM_GPUS:-2}
readonly GPU_TYPE=${MLC_SLURM_GPU_TYPE:-h100}  # the stand-in GPUs' gres type
readonly WAIT=${MLC_SLURM_WAIT:-60}
readonly CTL=mlc-slurm-ctl
readonly PREFIX=${SUBNET%.*/*}

say() { printf 'setup-slurm-cluster: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
elapsed() { printf '%d s' "$(( SECONDS - $1 ))"; }

[[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.0/24$ ]] || die "MLC_SLURM_SUBNET must be a /24 (got '$SUBNET')"
[[ "$NODE_COUNT" =~ ^[1-9]$ ]] || die "MLC_SLURM_NODES must be 1..9 (got '$NODE_COUNT')"
[[ "$GPUS" =~ ^[0-8]$ ]] || die "MLC_SLURM_GPUS must be 0..8 (got '$GPUS')"
[[ "$GPU_TYPE" =~ ^[a-z0-9_]+$ ]] || die "MLC_SLURM_GPU_TYPE must be a gres type such as h100 (got '$GPU_TYPE')"
[[ "$SHARED" == /* ]] || die "MLC_SLURM_SHARED must be an absolute path (got '$SHARED')"
[[ "$ETC" == /* ]] || die "MLC_SLURM_ETC must be an absolute path (got '$ETC')"

COMPUTE=()
for i in $(seq 1 "$NODE_COUNT"); do COMPUTE+=("mlc-slurm-n$i"); done
NODES=("$CTL" "${COMPUTE[@]}")
node_ip() { if [ "$1" = "$CTL" ]; then echo "$PREFIX.2"; else echo "$PREFIX.$(( ${1##*-n} + 2 ))"; fi; }
ours() {
  local labels=.Labels
  [ "$1" = container ] && labels=.Config.Labels
  [ "$(docker "$1" inspect --format "{{index $labels \"$LABEL\"}}" "$2" 2>/dev/null || true)" = 1 ]
}
exists() { docker "$1" inspect "$2" >/dev/null 2>&1; }

[ "$(id -u)" -eq 0 ] || die "needs root (node containers get almost all capabilities and the host's cgroups)"
"$HERE/ensure-engine.sh"
mkdir -p "$CACHE"
exec 9>"$CACHE/.slurm-cluster.lock"
if ! flock -n 9; then
  say "another setup-slurm-cluster.sh holds $CACHE/.slurm-cluster.lock; waiting for it ..."
  flock 9
fi

remove_cgroups() {
  # Slurm's cgroup plugin makes slurm_<node> folders at the host's cgroup root; a removed
  # node leaves them behind.
  local dir
  for dir in /sys/fs/cgroup/*/slurm_mlc-slurm-n*; do
    if [ -d "$dir" ]; then find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
}

# ------------------------------------------------------------------------------------ --down
if [ "${1:-}" = --down ]; then
  t0=$SECONDS
  for name in $(docker ps -aq --filter "label=$LABEL=1"); do
    docker rm -f -v "$name" >/dev/null && say "removed container $name"
  done
  if exists network "$NETWORK"; then
    if ours network "$NETWORK"; then docker network rm "$NETWORK" >/dev/null && say "removed network $NETWORK"
    else say "network $NETWORK was not made by this script; left alone"; fi
  fi
  remove_cgroups
  [ -e "$SHARED/.mlc-slurm-shared" ] && rm -rf "$SHARED" && say "removed $SHARED"
  [ -e "$ETC/.mlc-slurm-etc" ] && rm -rf "$ETC" && say "removed $ETC"
  if [ "${2:-}" = --purge ]; then
    if exists image "$NODE_IMAGE"; then docker rmi "$NODE_IMAGE" >/dev/null && say "removed image $NODE_IMAGE"; fi
    rm -f "$NODE_ROOTFS" && say "removed $NODE_ROOTFS"
  fi
  say "cluster down in $(elapsed "$t0")"
  exit 0
fi
case "${1:-}" in -*) die "unknown option $1 (usage: $0 | --down [--purge])" ;; esac
T_START=$SECONDS

# ------------------------------------------------------------------------------ node image
if exists image "$NODE_IMAGE"; then
  say "$NODE_IMAGE present"
else
  cached_rootfs trixie "$NODE_PACKAGES" "$NODE_ROOTFS" "$MIRROR"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL org.opencontainers.image.title="Slurm test node"' \
    --change "LABEL $LABEL=1" \
    --message "scripts/setup-slurm-cluster.sh: mmdebstrap trixie + Slurm, munge, crun" \
    "$NODE_ROOTFS" "$NODE_IMAGE" >/dev/null
  say "imported $NODE_IMAGE"
fi

# -------------------------------------------------------------------------- configuration
users=()
if [ -n "${MLC_SLURM_USERS:-}" ]; then
  read -r -a users <<<"$MLC_SLURM_USERS"
else
  for name in mlctest mlctest2; do getent passwd "$name" >/dev/null && users+=("$name"); done
fi
mkdir -p "$ETC" "$SHARED"
chmod 0755 "$ETC"
chmod 1777 "$SHARED"  # jobs run as any user of the cluster (like /tmp)
touch "$ETC/.mlc-slurm-etc" "$SHARED/.mlc-slurm-shared"
: >"$ETC/users"
for name in "${users[@]}"; do
  entry=$(getent passwd "$name") || die "MLC_SLURM_USERS: no user $name on this host"
  IFS=: read -r _ _ uid gid _ _ _ <<<"$entry"
  echo "$name $uid $gid" >>"$ETC/users"
done

gres_files=""
[ "$GPUS" -gt 0 ] && gres_files="/dev/nvidia[0-$(( GPUS - 1 ))]"
node_gres=""
# Typed, as sites describe their GPUs (gpu:h100:2): a kernel may ask for gpu:N or gpu:h100:N.
[ "$GPUS" -gt 0 ] && node_gres=" Gres=gpu:$GPU_TYPE:$GPUS"
# Each node's address on the cluster network: where its jobs' kernels are reached from this host.
node_lines=""
for i in $(seq 1 "$NODE_COUNT"); do
  node_lines+="NodeName=mlc-slurm-n$i NodeAddr=$(node_ip "mlc-slurm-n$i") CPUs=2 RealMemory=2000$node_gres State=UNKNOWN"$'\n'
done
cat >"$ETC/slurm.conf" <<EOF
# Made by scripts/setup-slurm-cluster.sh
ClusterName=mlc
SlurmctldHost=$CTL
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SlurmdTimeout=10
MinJobAge=600
KillWait=5
SchedulerParameters=bf_interval=2,sched_interval=2
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
${node_lines}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$ETC/cgroup.conf" <<'EOF'
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=yes
ConstrainDevices=yes
EOF
if [ "$GPUS" -gt 0 ]; then echo "Name=gpu Type=$GPU_TYPE File=$gres_files" >"$ETC/gres.conf"; else : >"$ETC/gres.conf"; fi
# Slurm's crun example, rootless, as the job's user: no cgroup manager (the step's cgroup is
# Slurm's), crun's state under the user's /run/user/UID.
cat >"$ETC/oci.conf" <<'EOF'
RunTimeEnvExclude="^(SLURM_CONF|SLURM_CONF_SERVER)="
RunTimeQuery="crun --cgroup-manager=disabled --rootless=true --root=/run/user/%U/ state %n.%u.%j.%s.%t"
RunTimeKill="crun --cgroup-manager=disabled --rootless=true --root=/run/user/%U/ kill -a %n.%u.%j.%s.%t"
RunTimeDelete="crun --cgroup-manager=disabled --rootless=true --root=/run/user/%U/ delete --force %n.%u.%j.%s.%t"
RunTimeRun="exec crun --cgroup-manager=disabled --rootless=true --root=/run/user/%U/ run --bundle %b %n.%u.%j.%s.%t"
EOF
cat >"$ETC/start-node.sh" <<EOF
#!/bin/sh
# A node container's entry point (made by scripts/setup-slurm-cluster.sh): users, munge, device
# nodes, then the daemon of its role in the foreground.
set -e
while read -r name uid gid; do
  getent group "\$name" >/dev/null || groupadd -g "\$gid" "\$name"
  getent passwd "\$name" >/dev/null || useradd -u "\$uid" -g "\$gid" -M -d /nonexistent -s /bin/sh "\$name"
  mkdir -p "/run/user/\$uid" && chown "\$uid:\$gid" "/run/user/\$uid" && chmod 0700 "/run/user/\$uid"
done </etc/slurm/users
chmod 0755 /run/user
mkdir -p /run/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown munge:munge /run/munge && chown slurm /var/spool/slurmctld /var/log/slurm
runuser -u munge -- munged
# crun refuses cgroups in hybrid mode; Slurm's cgroup/v1 plugin uses the v1 hierarchies only.
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
i=0
while [ "\$i" -lt $GPUS ]; do
  [ -e "/dev/nvidia\$i" ] || mknod -m 0666 "/dev/nvidia\$i" c 195 "\$i"
  i=\$((i + 1))
done
case "\$1" in
  ctl) exec slurmctld -D -i ;;
  node) exec slurmd -D -N "\$(hostname)" ;;
esac
EOF
chmod 0755 "$ETC/start-node.sh"

# ---------------------------------------------------------------------------- containers
if exists network "$NETWORK"; then
  ours network "$NETWORK" || die "network $NETWORK exists but was not made by this script"
else
  docker network create --driver bridge --subnet "$SUBNET" --gateway "$PREFIX.1" \
    --label "$LABEL=1" "$NETWORK" >/dev/null || die "could not create network $NETWORK ($SUBNET): set MLC_SLURM_SUBNET"
  say "created network $NETWORK ($SUBNET)"
fi
for name in "${NODES[@]}"; do
  role=node
  [ "$name" = "$CTL" ] && role=ctl
  if exists container "$name"; then
    ours container "$name" || die "container $name exists but was not made by this script"
    if [ "$(docker inspect --format '{{.State.Running}}' "$name")" != true ]; then
      docker start "$name" >/dev/null && say "started $name"
    fi
    continue
  fi
  docker run --detach --init --name "$name" --hostname "$name" --label "$LABEL=1" \
    --network "$NETWORK" --ip "$(node_ip "$name")" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --volume "$ETC:/etc/slurm:ro" --volume "$SHARED:$SHARED" --tmpfs /run --tmpfs /var/spool:exec \
    "$NODE_IMAGE" /etc/slurm/start-node.sh "$role" >/dev/null
  say "created $name ($(node_ip "$name"), $role)"
done

deadline=$((SECONDS + WAIT))
until [ "$(docker exec "$CTL" sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 == "idle" || $2 == "mix" || $2 == "alloc"' | wc -l)" = "$NODE_COUNT" ]; do
  for name in "${NODES[@]}"; do
    [ "$(docker inspect --format '{{.State.Running}}' "$name")" = true ] \
      || { docker logs --tail 20 "$name" >&2 || true; die "$name exited while starting (logs above)"; }
  done
  [ "$SECONDS" -lt "$deadline" ] || { docker exec "$CTL" sinfo -N >&2 || true; die "not all nodes idle within $WAIT s"; }
  sleep 0.5
done
say "cluster up in $(elapsed "$T_START"): $(docker exec "$CTL" sinfo -h -o '%D nodes %t')"

echo "SLURM_LOGIN=$CTL"
echo "SLURM_SHARED=$SHARED"
echo "SLURM_NETWORK=$NETWORK"
for name in "${COMPUTE[@]}"; do echo "SLURM_NODE=$name $(node_ip "$name") $GPUS"; done
