#!/usr/bin/env bash
# setup-test-user.sh: prepare real non-root users for tests/test_nonroot.py (CI runs as root,
# where file ownership proves nothing). Called by scripts/test.sh (run by .ci/run) and by that
# test's fixture when a user or the venv is missing. Needs root.
#
#   * users mlctest and mlctest2 (homes under /home, shell /bin/bash) in the docker group,
#     created if missing (two users of one box: neither may get code run in the other's kernels);
#   * venv /opt/mlcontainer-test-venv made with Debian's /usr/bin/python3 (the default python3
#     may live under /root, which other users cannot enter), holding jupyter_client, docker,
#     pyzmq, ipykernel, traitlets (+ nvidia-ml-py, a dependency of the package), readable and
#     executable by everyone;
#   * checks, as mlctest, that the venv's docker SDK reaches the engine.
# A second run only re-checks (the venv is rebuilt when the package list changes or an import fails).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly USER_NAME=mlctest
readonly USER_HOME=/home/mlctest
readonly USER_NAMES=(mlctest mlctest2)
readonly VENV=/opt/mlcontainer-test-venv
readonly PY=/usr/bin/python3
readonly PACKAGES=(jupyter_client docker pyzmq ipykernel traitlets nvidia-ml-py nbformat)
readonly IMPORTS="import jupyter_client, docker, zmq, ipykernel, traitlets, tornado, pynvml, nbformat"
readonly STAMP="$VENV/.mlcontainer-packages"

say() { printf 'setup-test-user: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user and a venv under /opt)"
"$HERE/ensure-engine.sh"

# ------------------------------------------------------------------ group + user
if ! getent group docker >/dev/null; then
  say "creating the system group docker"
  groupadd --system docker
fi
for name in "${USER_NAMES[@]}"; do
  if id "$name" >/dev/null 2>&1; then
    say "user $name exists (uid $(id -u "$name"))"
  else
    say "creating user $name (home /home/$name, group docker)"
    useradd --create-home --home-dir "/home/$name" --shell /bin/bash --groups docker \
      --comment "jupyter-mlcontainer test user" "$name"
  fi
  if ! id -nG "$name" | tr ' ' '\n' | grep -qx docker; then
    say "adding $name to the docker group"
    usermod --append --groups docker "$name"
  fi
done

sock=/var/run/docker.sock
if [ -S "$sock" ]; then
  read -r sock_group sock_mode < <(stat -c '%G %a' "$sock")
  if [ "$sock_group" != docker ] || [ $(( 8#$sock_mode & 8#060 )) -ne $(( 8#060 )) ]; then
    say "warning: $sock is group $sock_group mode $sock_mode, not group docker rw;"
    say "         restart dockerd now that the docker group exists, or $USER_NAME cannot reach it"
  fi
fi

# ------------------------------------------------------------------ venv
[ -x "$PY" ] || die "$PY missing (Debian: apt-get install python3)"
want="$(printf '%s\n' "${PACKAGES[@]}")"
venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c "$IMPORTS" >/dev/null 2>&1
}
if venv_ok; then
  say "venv $VENV is ready ($("$VENV/bin/python" --version 2>&1))"
else
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "$PY cannot make venvs (install python3-venv)"
    say "installing python3-venv ..."
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install python3-venv >&2
  fi
  t0=$SECONDS
  say "creating venv $VENV with $PY ($("$PY" --version 2>&1)) and installing: ${PACKAGES[*]}"
  rm -rf "$VENV"
  (umask 022 && "$PY" -m venv "$VENV")
  (umask 022 && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-cache-dir "${PACKAGES[@]}" 2>&1 \
      | sed '/is ignored: it is neither a file nor a directory/d' >&2) || die "pip install into $VENV failed"
  "$VENV/bin/python" -c "$IMPORTS" || die "the venv cannot import its packages"
  printf '%s\n' "$want" >"$STAMP"
  say "venv ready in $((SECONDS - t0)) s"
fi
chmod -R a+rX "$VENV"

# ------------------------------------------------------------------ check as the user
say "checking as $USER_NAME: docker SDK in $VENV reaches the engine ..."
version=$(cd / && runuser -u "$USER_NAME" -- env HOME="$USER_HOME" "$VENV/bin/python" -c \
  "import docker; print(docker.from_env().version()['Version'])") \
  || die "$USER_NAME cannot reach the Docker engine through $VENV (is $sock group docker, mode 660?)"
say "ok: $USER_NAME (uid $(id -u "$USER_NAME"), groups $(id -nG "$USER_NAME")) sees Docker engine $version"
