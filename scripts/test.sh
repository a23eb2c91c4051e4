#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh machine of the CI
# kind (Docker engine, test images, non-root test users with rootless engines of their own,
# the package with its test extras, the labextension build) and runs every test. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for tool in dockerd:docker.io mmdebstrap:mmdebstrap script:util-linux docker-registry:docker-registry chromium:chromium; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
  done
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

say "Docker engine"
bash scripts/ensure-engine.sh
say "test images (built offline)"
bash scripts/build-test-images.sh
say "local registry on 127.0.0.1:5000 (pull tests)"
bash scripts/local-registry.sh
say "non-root test users"
bash scripts/setup-test-user.sh
say "rootless Docker and Podman of each test user (tests/test_rootless.py)"
for user in mlctest mlctest2; do
  bash scripts/setup-rootless-engines.sh "$user" mlcontainer-test/base:bookworm >/dev/null
done
say "installing jupyter-mlcontainer with its test extras (builds the labextension)"
python3 -m pip install --quiet --upgrade-strategy only-if-needed ".[test]"
say "pytest"
exec python3 -m pytest -ra "$@"
