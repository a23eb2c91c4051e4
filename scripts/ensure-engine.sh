#!/usr/bin/env bash
# ensure-engine.sh: make sure a Docker engine answers `docker info`.
#
# Called by scripts/test.sh (the README's test command, run by .ci/run), scripts/start.sh, and
# by build-test-images.sh, local-registry.sh and setup-test-user.sh; safe to run by hand.
#
#   * `docker info` already works                  -> exit 0, nothing else happens.
#   * root, no dockerd binary, apt-get available   -> install Debian's docker.io (noninteractive).
#   * root, dockerd installed but not running      -> `systemctl start docker` where systemd runs,
#     else start dockerd in the background (setsid/nohup, log /var/log/mlcontainer-dockerd.log),
#     after clearing a stale /var/run/docker.pid, and wait up to 60 s (MLCONTAINER_ENGINE_WAIT).
#   * not root and no engine                       -> say what to do, exit 1.
# Also reports whether docker-init (tini, used by `docker run --init`) is available.
set -euo pipefail

readonly LOG=${MLCONTAINER_DOCKERD_LOG:-/var/log/mlcontainer-dockerd.log}
readonly PIDFILE=/var/run/docker.pid
readonly WAIT=${MLCONTAINER_ENGINE_WAIT:-60}

say() { printf 'ensure-engine: %s\n' "$*" >&2; }
engine_up() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

report_init() {
  # dockerd looks for docker-init on its PATH (Debian: /usr/bin/docker-init -> tini-static).
  local init
  if init=$(command -v docker-init 2>/dev/null); then
    say "docker-init available: $init${init:+ -> $(readlink -f "$init")} (docker run --init works)"
  else
    say "docker-init not found on PATH: \`docker run --init\` will fail (Debian: apt-get install tini)"
  fi
}

# A pid file is stale when no live dockerd owns the pid in it (pids get reused).
pidfile_is_stale() {
  [ -e "$PIDFILE" ] || return 1
  local pid comm
  pid=$(tr -dc '0-9' <"$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  [ "$comm" != dockerd ]
}

if engine_up; then
  say "Docker engine already answers (server $(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ]; then
    say "a Docker engine runs but $(id -un) may not use /var/run/docker.sock."
    say "Ask an administrator: usermod -aG docker $(id -un)   (then log in again)"
  elif command -v dockerd >/dev/null 2>&1; then
    say "dockerd is installed but not running; starting it needs root:"
    say "  sudo systemctl start docker    (or: sudo $0)"
  else
    say "no Docker engine is reachable and none is installed."
    say "Install one (Debian/Ubuntu: sudo apt-get install docker.io; or https://docs.docker.com/engine/install/),"
    say "then add yourself to the docker group: sudo usermod -aG docker $(id -un)"
  fi
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no Docker engine and no apt-get to install one: install Docker Engine for this OS"
    say "(https://docs.docker.com/engine/install/) and run this script again."
    exit 1
  fi
  say "installing Debian's docker.io (apt-get update + install; a few minutes) ..."
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a concurrent apt/dpkg run instead of failing on its lock.
  apt_opts=(-o DPkg::Lock::Timeout=600 -y -q)
  apt-get "${apt_opts[@]}" update >&2
  apt-get "${apt_opts[@]}" install docker.io tini >&2
  hash -r
fi

# The socket is created with group "docker" only when that group exists as dockerd starts.
if ! getent group docker >/dev/null 2>&1; then
  say "creating the system group docker (owner group of /var/run/docker.sock)"
  groupadd --system docker
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  say "starting docker through systemd"
  systemctl start docker.socket docker.service >&2 || say "systemctl start docker failed; trying dockerd directly"
fi

if ! engine_up; then
  if pgrep -x dockerd >/dev/null 2>&1; then
    say "a dockerd process is already running (pid $(pgrep -x dockerd | tr '\n' ' ')); waiting for it to answer"
  else
    if pidfile_is_stale; then
      say "removing stale $PIDFILE (no live dockerd holds it)"
      rm -f "$PIDFILE"
    fi
    mkdir -p "$(dirname "$LOG")"
    say "starting dockerd in the background (log: $LOG)"
    printf '\n=== %s ensure-engine.sh starting dockerd ===\n' "$(date -u +%FT%TZ)" >>"$LOG"
    (cd / && setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &)
  fi
  deadline=$((SECONDS + WAIT))
  until engine_up; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "the Docker engine did not answer within ${WAIT} s. Last lines of $LOG:"
      tail -n 25 "$LOG" >&2 2>/dev/null || true
      exit 1
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
      sleep 1
      pgrep -x dockerd >/dev/null 2>&1 && continue
      engine_up && break
      say "dockerd exited while starting. Last lines of $LOG:"
      tail -n 25 "$LOG" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 1
  done
fi

say "Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is up" \
    "(storage $(docker info --format '{{.Driver}}' 2>/dev/null), cgroup v$(docker info --format '{{.CgroupVersion}}' 2>/dev/null))"
report_init
