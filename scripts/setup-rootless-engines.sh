#!/usr/bin/env bash
# setup-rootless-engines.sh: give one non-root user two engines of their own, a rootless Docker
# daemon and Podman's Docker-compatible API service, for tests (and manual checks) of kernels
# on rootless engines. Called by the rootless-engine test fixtures and by hand; needs root
# (it installs packages and starts the engines as the user). Safe to run again: a second run
# only checks (fast when both engines answer and hold the images).
#
#   setup-rootless-engines.sh USER [IMAGE...]    set up / check, then print on stdout:
#       DOCKER_HOST_ROOTLESS=unix:///run/mlcontainer-rootless/USER/docker.sock
#       DOCKER_HOST_PODMAN=unix:///run/mlcontainer-rootless/USER/podman.sock
#   setup-rootless-engines.sh --stop USER         stop both engines (containers, then daemons)
#
#   * Debian packages rootlesskit slirp4netns fuse-overlayfs uidmap podman catatonit, installed
#     only when missing (apt-get waits up to 600 s for a concurrent dpkg run's lock);
#   * /etc/subuid and /etc/subgid ranges for USER (usermod --add-subuids/--add-subgids, 65536
#     ids after the highest range in use) when USER has none;
#   * XDG_RUNTIME_DIR /run/mlcontainer-rootless/USER (owner USER, mode 0700, so only USER and
#     root reach the sockets); ~/.config/containers/{storage,containers}.conf written when
#     missing (overlay storage instead of vfs; cgroupfs and file events: no systemd/journald);
#   * as USER (setpriv, clean environment): dockerd-rootless.sh (--iptables=false when the
#     kernel's ip_tables cannot be used, see the field notes) and `podman system service
#     --time=0`, each in its own session in the background; logs and pid files in
#     /var/log/mlcontainer-rootless/USER-{dockerd,podman}.log and /run/mlcontainer-rootless/
#     USER.{dockerd,podman}.pid; each must answer `docker -H unix://SOCK info` within
#     MLCONTAINER_ROOTLESS_WAIT seconds (default 90);
#   * the test images (default mlcontainer-test/base:bookworm and mlcontainer-test/ipykernel7:
#     bookworm; or the IMAGE arguments, or MLCONTAINER_ROOTLESS_IMAGES) copied from the root
#     engine (`docker save | docker -H ... load` as USER) into each engine where missing or
#     older than the root engine's (image id differs).
# Progress goes to stderr; only the two DOCKER_HOST_* lines go to stdout.
set -euo pipefail

readonly CONTRIB=/usr/share/docker.io/contrib
readonly BASE_DIR=/run/mlcontainer-rootless
readonly LOG_DIR=/var/log/mlcontainer-rootless
readonly WAIT=${MLCONTAINER_ROOTLESS_WAIT:-90}
readonly PACKAGES=(rootlesskit slirp4netns fuse-overlayfs uidmap podman catatonit)
readonly DEFAULT_IMAGES="mlcontainer-test/base:bookworm mlcontainer-test/ipykernel7:bookworm"

say() { printf 'setup-rootless-engines: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
usage() {
  sed -n '8,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

mode=start
if [ "${1:-}" = --stop ]; then mode=stop; shift; fi
case "${1:-}" in ""|-h|--help|-*) usage ;; esac
readonly USER_NAME=$1; shift
readonly MODE=$mode

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts engines as $USER_NAME)"
id "$USER_NAME" >/dev/null 2>&1 || die "no user $USER_NAME (scripts/setup-test-user.sh creates mlctest and mlctest2)"
USER_UID=$(id -u "$USER_NAME"); USER_GID=$(id -g "$USER_NAME")
USER_HOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
readonly USER_UID USER_GID USER_HOME
[ "$USER_UID" -ne 0 ] || die "$USER_NAME is root: rootless engines need a non-root user"

readonly RUN_DIR=$BASE_DIR/$USER_NAME                  # the user's XDG_RUNTIME_DIR
readonly DOCKER_SOCK=$RUN_DIR/docker.sock
readonly PODMAN_SOCK=$RUN_DIR/podman.sock
readonly DOCKERD_PID=$BASE_DIR/$USER_NAME.dockerd.pid  # root-owned: the user cannot forge them
readonly PODMAN_PID=$BASE_DIR/$USER_NAME.podman.pid
readonly DOCKERD_LOG=$LOG_DIR/$USER_NAME-dockerd.log
readonly PODMAN_LOG=$LOG_DIR/$USER_NAME-podman.log
# The engine the images come from: root's DOCKER_HOST, unless that is one of the rootless
# engines (a fixture that already exported one), else the local socket.
case "${DOCKER_HOST:-}" in
  ""|unix://$BASE_DIR/*) SOURCE_HOST=unix:///var/run/docker.sock ;;
  *) SOURCE_HOST=$DOCKER_HOST ;;
esac
readonly SOURCE_HOST
src_docker() { docker -H "$SOURCE_HOST" "$@"; }

# Run a command as the user with a clean environment: the engines and the CLI must not see
# root's DOCKER_HOST, HOME or PATH.
as_user() { (cd / && exec_as_user "$@"); }
exec_as_user() {
  exec setpriv --reuid="$USER_UID" --regid="$USER_GID" --init-groups \
    env -i HOME="$USER_HOME" USER="$USER_NAME" LOGNAME="$USER_NAME" SHELL=/bin/bash \
      XDG_RUNTIME_DIR="$RUN_DIR" PATH="$CONTRIB:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" "$@"
}
answers() { timeout 20 docker -H "unix://$1" info >/dev/null 2>&1; }  # root can reach the 0700 dir

# The pid in FILE when that process is alive and its command is one of the given names.
live_pid() {
  local file=$1 pid comm; shift
  [ -r "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  local name
  for name in "$@"; do [ "$comm" = "$name" ] && { echo "$pid"; return 0; }; done
  return 1
}

# Send SIGTERM and wait up to $2 s for the process to go; SIGKILL after that.
stop_pid() {
  local pid=$1 secs=$2 what=$3
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "$what (pid $pid) still running after ${secs} s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
}

# ------------------------------------------------------------------ --stop
if [ "$MODE" = stop ]; then
  if pid=$(live_pid "$PODMAN_PID" podman); then
    if answers "$PODMAN_SOCK"; then
      say "podman: stopping $USER_NAME's running containers"
      as_user podman --url "unix://$PODMAN_SOCK" stop --all --time 10 >/dev/null 2>&1 || true
    fi
    say "podman: stopping the API service (pid $pid)"
    stop_pid "$pid" 30 "podman system service"
  else
    say "podman: no service of $USER_NAME running"
  fi
  # The rootless pause process keeps the user namespace: without a service it only holds ids.
  if pid=$(live_pid "$RUN_DIR/libpod/tmp/pause.pid" catatonit podman); then
    say "podman: stopping the pause process (pid $pid)"
    stop_pid "$pid" 10 "podman pause process"
  fi
  rm -f "$PODMAN_PID" "$PODMAN_SOCK"
  # dockerd-rootless.sh execs rootlesskit, whose child (in the namespaces) execs dockerd:
  # SIGTERM to rootlesskit is passed on to dockerd, which stops its containers and exits.
  if pid=$(live_pid "$DOCKERD_PID" rootlesskit); then
    say "rootless dockerd: stopping (rootlesskit pid $pid; dockerd stops its containers)"
    stop_pid "$pid" 60 "rootless dockerd"
  else
    say "rootless dockerd: not running for $USER_NAME"
  fi
  rm -f "$DOCKERD_PID"
  say "stopped; logs kept in $LOG_DIR"
  exit 0
fi

# ------------------------------------------------------------------ packages
need_tool() { [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ] || [ -x "/bin/$1" ]; }
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} (apt-get; a few minutes) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-o DPkg::Lock::Timeout=600 -y -q)
  apt-get "${apt_opts[@]}" install "${missing[@]}" >&2 \
    || { apt-get "${apt_opts[@]}" update >&2 && apt-get "${apt_opts[@]}" install "${missing[@]}" >&2; } \
    || die "apt-get install ${missing[*]} failed"
  hash -r
fi
for tool in dockerd docker rootlesskit slirp4netns newuidmap newgidmap podman catatonit; do
  need_tool "$tool" || die "$tool not found (Debian: docker.io / ${PACKAGES[*]})"
done
[ -x "$CONTRIB/dockerd-rootless.sh" ] || die "$CONTRIB/dockerd-rootless.sh missing (Debian's docker.io ships it)"
src_docker info >/dev/null 2>&1 || die "the engine at $SOURCE_HOST does not answer (scripts/ensure-engine.sh); the images come from it"

# ------------------------------------------------------------------ subordinate ids
# A range after every range in use in both files (useradd gives 100000+65536*n).
next_sub_start() {
  awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' /etc/subuid /etc/subgid
}
for kind in uid gid; do
  file=/etc/sub$kind
  touch "$file"
  if ! grep -q "^\($USER_NAME\|$USER_UID\):" "$file"; then
    start=$(next_sub_start); end=$((start + 65535))
    say "adding sub${kind}s $start-$end for $USER_NAME ($file)"
    usermod "--add-sub${kind}s" "$start-$end" "$USER_NAME"
  fi
done

# ------------------------------------------------------------------ folders and user config
install -d -m 0755 -o root -g root "$BASE_DIR" "$LOG_DIR"
install -d -m 0700 -o "$USER_UID" -g "$USER_GID" "$RUN_DIR"
[ -d "$USER_HOME" ] || die "$USER_NAME's home $USER_HOME does not exist"
as_user mkdir -p "$USER_HOME/.config/containers"
if [ ! -e "$USER_HOME/.config/containers/storage.conf" ] \
   && [ ! -e "$USER_HOME/.local/share/containers/storage/libpod" ]; then
  # Only before Podman's first use: changing the driver of existing storage breaks it.
  say "writing $USER_HOME/.config/containers/storage.conf (overlay, not vfs)"
  as_user tee "$USER_HOME/.config/containers/storage.conf" >/dev/null <<'EOF'
# Written by jupyter-mlcontainer's scripts/setup-rootless-engines.sh: kernel >= 5.13 mounts
# overlay in a user namespace, and vfs copies every layer in full.
[storage]
driver = "overlay"
EOF
fi
if [ ! -e "$USER_HOME/.config/containers/containers.conf" ]; then
  say "writing $USER_HOME/.config/containers/containers.conf (cgroupfs, file events: no systemd)"
  as_user tee "$USER_HOME/.config/containers/containers.conf" >/dev/null <<'EOF'
# Written by jupyter-mlcontainer's scripts/setup-rootless-engines.sh: this machine has no
# systemd user session and no journald.
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
fi

# ------------------------------------------------------------------ engines
# Whether dockerd can use iptables in its network namespace: without ip_tables (no module
# loading in a user namespace) it fails to start, so it runs with --iptables=false.
iptables_ok() {
  grep -qw ip_tables /proc/modules 2>/dev/null \
    || [ -e /proc/net/ip_tables_names ] \
    || iptables -t nat -L -n >/dev/null 2>&1
}

# start_engine NAME SOCK PIDFILE LOG COMMAND...: start COMMAND as the user unless SOCK answers.
start_engine() {
  local name=$1 sock=$2 pidfile=$3 log=$4; shift 4
  local pid
  if answers "$sock"; then
    say "$name: answers on unix://$sock"
    return 0
  fi
  if pid=$(live_pid "$pidfile" rootlesskit podman setpriv env setsid dockerd-rootles); then
    say "$name: pid $pid is running but does not answer yet; waiting"
  else
    rm -f "$pidfile"
    [ -S "$sock" ] && { say "$name: removing stale socket $sock"; rm -f "$sock"; }
    printf '\n=== %s setup-rootless-engines.sh starting %s: %s ===\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$log"
    # The subshell execs setpriv -> env -> setsid -> COMMAND; backgrounded from a script (no
    # job control) it is no group leader, so setsid does not fork: $! ends up as rootlesskit
    # (dockerd-rootless.sh execs it) or podman, in a session of its own.
    (cd / && exec_as_user setsid "$@") >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    say "$name: started (pid $pid, log $log)"
  fi
  local t0=$SECONDS deadline=$((SECONDS + WAIT))
  until answers "$sock"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited while starting. Last lines of $log:"
      tail -n 30 "$log" >&2 || true
      rm -f "$pidfile"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "$name did not answer on unix://$sock within ${WAIT} s. Last lines of $log:"
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  say "$name: answers on unix://$sock after $((SECONDS - t0)) s"
}

dockerd_flags=(--host "unix://$DOCKER_SOCK" --pidfile "$RUN_DIR/docker.pid" --storage-driver overlay2)
iptables_ok || dockerd_flags+=(--iptables=false)
start_engine "rootless dockerd" "$DOCKER_SOCK" "$DOCKERD_PID" "$DOCKERD_LOG" \
  "$CONTRIB/dockerd-rootless.sh" "${dockerd_flags[@]}" || die "rootless dockerd for $USER_NAME did not start"
start_engine "podman service" "$PODMAN_SOCK" "$PODMAN_PID" "$PODMAN_LOG" \
  podman system service --time=0 "unix://$PODMAN_SOCK" || die "podman service for $USER_NAME did not start"

# ------------------------------------------------------------------ images
if [ $# -gt 0 ]; then images=("$@")
else read -r -a images <<<"${MLCONTAINER_ROOTLESS_IMAGES:-$DEFAULT_IMAGES}"; fi
image_id() {  # image_id [SOCK] IMAGE -> the image's id, or nothing
  if [ $# -eq 2 ]; then as_user docker -H "unix://$1" image inspect --format '{{.Id}}' "$2" 2>/dev/null || true
  else src_docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; fi
}
for image in "${images[@]}"; do
  root_id=$(image_id "$image")
  [ -n "$root_id" ] || die "$image is not in the engine at $SOURCE_HOST (scripts/build-test-images.sh builds the test images)"
  for sock in "$DOCKER_SOCK" "$PODMAN_SOCK"; do
    have=$(image_id "$sock" "$image")
    # Podman reports ids without the sha256: prefix.
    if [ -n "$have" ] && [ "${have#sha256:}" = "${root_id#sha256:}" ]; then
      continue
    fi
    t0=$SECONDS
    say "loading $image into unix://$sock${have:+ (replacing ${have#sha256:})} ..."
    out=$(src_docker save "$image" | as_user docker -H "unix://$sock" load -q 2>&1) \
      || die "loading $image into unix://$sock failed: $out"
    have=$(image_id "$sock" "$image")
    [ "${have#sha256:}" = "${root_id#sha256:}" ] \
      || say "warning: $image in unix://$sock has id ${have:-none}, the one at $SOURCE_HOST has $root_id"
    say "loaded $image into unix://$sock in $((SECONDS - t0)) s"
  done
done

say "ready for $USER_NAME: rootless Docker $(as_user docker -H "unix://$DOCKER_SOCK" version --format '{{.Server.Version}}' 2>/dev/null)," \
    "Podman $(as_user docker -H "unix://$PODMAN_SOCK" version --format '{{.Server.Version}}' 2>/dev/null)"
echo "DOCKER_HOST_ROOTLESS=unix://$DOCKER_SOCK"
echo "DOCKER_HOST_PODMAN=unix://$PODMAN_SOCK"
