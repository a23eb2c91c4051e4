#!/usr/bin/env bash
# local-registry.sh: run a local, unauthenticated image registry on 127.0.0.1:5000 (Debian's
# docker-registry, i.e. distribution 2.8) and seed it with the base test image.
#
# Called by hand (or by a test/CI step) before anything that pulls/pushes through a registry:
# no public registry is reachable on the CI machine kind. Needs root and a Docker engine, and
# mlcontainer-test/base:bookworm (scripts/build-test-images.sh).
#
#   * If http://127.0.0.1:5000/v2/ already answers as a registry, no second one is started.
#   * Else starts /usr/bin/docker-registry in the background (setsid/nohup) with a minimal
#     config in /run/mlcontainer-registry/config.yml, storage under /var/lib/mlcontainer-registry,
#     log /var/log/mlcontainer-registry.log, and waits up to 30 s for /v2/ to answer.
#   * Seeds/verifies: pushes mlcontainer-test/base:bookworm as
#     127.0.0.1:5000/mlcontainer-test/base:bookworm, removes that tag locally, pulls it back
#     and checks that `docker image inspect` shows RepoDigests. Skipped when the registry
#     already holds the tag and the local tag has a RepoDigest from it (VERIFY=1 forces it).
# Docker allows plain HTTP to 127.0.0.0/8 registries by default (no insecure-registries needed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly ADDR=127.0.0.1:5000
readonly URL="http://$ADDR"
readonly STATE_DIR=/run/mlcontainer-registry
readonly CONFIG="$STATE_DIR/config.yml"
readonly PIDFILE="$STATE_DIR/registry.pid"
readonly STORAGE=/var/lib/mlcontainer-registry
readonly LOG=/var/log/mlcontainer-registry.log
readonly BIN=/usr/bin/docker-registry
readonly SOURCE_IMAGE=mlcontainer-test/base:bookworm
readonly REPO=mlcontainer-test/base
readonly TAG=bookworm
readonly TARGET="$ADDR/$REPO:$TAG"
readonly VERIFY=${VERIFY:-0}

say() { printf 'local-registry: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# True when a Docker distribution registry answers on $URL (its /v2/ sends this header).
registry_up() {
  curl -fsS -m 3 -o /dev/null -D - "$URL/v2/" 2>/dev/null \
    | grep -qi '^docker-distribution-api-version: *registry/2'
}

if registry_up; then
  say "a registry already answers at $URL/v2/"
else
  [ "$(id -u)" -eq 0 ] || die "no registry at $URL and starting one needs root (sudo $0)"
  if [ ! -x "$BIN" ]; then
    command -v apt-get >/dev/null 2>&1 || die "$BIN missing and no apt-get: install Debian's docker-registry"
    say "installing Debian's docker-registry ..."
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install docker-registry >&2 || {
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q update >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install docker-registry >&2
    }
  fi
  if curl -s -m 3 -o /dev/null "$URL/" 2>/dev/null; then
    die "something that is not a registry already listens on $ADDR (see: ss -ltnp 'sport = :5000')"
  fi
  mkdir -p "$STATE_DIR" "$STORAGE" "$(dirname "$LOG")"
  cat >"$CONFIG" <<EOF
# Written by scripts/local-registry.sh: a local test registry, no auth, plain HTTP on loopback.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STORAGE
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  secret: mlcontainer-local-test-registry
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  # pid of a live docker-registry recorded in $PIDFILE (pids get reused: check the name).
  live_pid() {
    local pid
    [ -r "$PIDFILE" ] || return 1
    pid=$(tr -dc '0-9' <"$PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = docker-registry ] \
      && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || true)" != Z ] && printf '%s\n' "$pid"
  }
  start_registry() {
    say "starting $BIN on $ADDR (config $CONFIG, storage $STORAGE, log $LOG)"
    printf '\n=== %s local-registry.sh starting docker-registry ===\n' "$(date -u +%FT%TZ)" >>"$LOG"
    (cd / && exec setsid nohup "$BIN" serve "$CONFIG" >>"$LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
  }
  show_log() { tail -n 15 "$LOG" 2>/dev/null | cut -c1-400 >&2 || true; }

  if pid=$(live_pid); then
    say "docker-registry (pid $pid) runs but does not answer yet; waiting for it"
  else
    start_registry
  fi
  started_again=0
  deadline=$((SECONDS + 30))
  until registry_up; do
    if ! pid=$(live_pid); then
      if [ "$started_again" = 0 ]; then  # e.g. an old registry that was just shutting down
        started_again=1
        start_registry
        continue
      fi
      rm -f "$PIDFILE"
      say "docker-registry exited. Last lines of $LOG:"; show_log
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "docker-registry did not answer within 30 s. Last lines of $LOG:"; show_log
      exit 1
    fi
    sleep 0.5
  done
  pid=$(live_pid || true)
  say "registry answers at $URL/v2/ (pid $pid)"
fi

# ------------------------------------------------------------- seed + verify push/pull
"$HERE/ensure-engine.sh"
docker image inspect "$SOURCE_IMAGE" >/dev/null 2>&1 \
  || die "$SOURCE_IMAGE is missing: run scripts/build-test-images.sh first"

remote_has_tag() {
  curl -fsS -m 10 -o /dev/null -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$URL/v2/$REPO/manifests/$TAG" 2>/dev/null
}
local_digest() {
  docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$TARGET" 2>/dev/null \
    | grep -m1 "^$ADDR/$REPO@sha256:" || true
}
same_image() {
  [ "$(docker image inspect --format '{{.Id}}' "$TARGET" 2>/dev/null || true)" = \
    "$(docker image inspect --format '{{.Id}}' "$SOURCE_IMAGE")" ]
}

if [ "$VERIFY" != 1 ] && remote_has_tag && same_image && [ -n "$(local_digest)" ]; then
  say "$TARGET already pushed and pulled ($(local_digest)); VERIFY=1 checks again"
  exit 0
fi

t0=$SECONDS
say "pushing $SOURCE_IMAGE as $TARGET ..."
docker tag "$SOURCE_IMAGE" "$TARGET"
docker push "$TARGET" >&2 || die "docker push $TARGET failed (log: $LOG)"
say "removing the local tag $TARGET and pulling it back ..."
docker rmi "$TARGET" >/dev/null
if docker image inspect "$TARGET" >/dev/null 2>&1; then die "$TARGET still present after docker rmi"; fi
docker pull "$TARGET" >&2 || die "docker pull $TARGET failed (log: $LOG)"
digest=$(local_digest)
[ -n "$digest" ] || die "$TARGET has no RepoDigests after the pull"
same_image || die "$TARGET pulled back as a different image than $SOURCE_IMAGE"
say "verified push + rmi + pull in $((SECONDS - t0)) s: RepoDigests $digest"
