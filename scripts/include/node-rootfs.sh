# node-rootfs.sh: sourced by the scripts that build a test cluster's node image
# (setup-swarm-cluster.sh, setup-slurm-cluster.sh).
#
#   cached_rootfs SUITE PACKAGES ROOTFS MIRROR
# makes ROOTFS, a Debian SUITE minbase root file system with PACKAGES (comma-separated), with
# mmdebstrap unless ROOTFS already exists (the cache: a rebuild after `docker rmi` is fast).
# Written to a partial file first, so a failed run leaves no half root file system behind.
# Progress on stderr; exits the calling script with a message on failure.

cached_rootfs() {
  local suite=$1 packages=$2 rootfs=$3 mirror=$4 t0 partial
  if [ -s "$rootfs" ]; then
    printf 'node image: using cached %s\n' "$rootfs" >&2
    return 0
  fi
  command -v mmdebstrap >/dev/null 2>&1 || {
    printf 'node image: installing mmdebstrap ...\n' >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install mmdebstrap >&2
  }
  t0=$SECONDS
  partial="$(dirname "$rootfs")/.$(basename "$rootfs" .tar).partial.tar"
  rm -f "$partial"
  printf 'node image: mmdebstrap %s minbase + %s -> %s ...\n' "$suite" "$packages" "$rootfs" >&2
  # shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's hook shell
  nice mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
    "$suite" "$partial" "$mirror" >&2 || {
      rm -f "$partial"
      printf 'node image: ERROR: mmdebstrap of %s failed\n' "$rootfs" >&2
      exit 1
    }
  mv -f "$partial" "$rootfs"
  printf 'node image: mmdebstrap took %d s (%s)\n' "$(( SECONDS - t0 ))" "$(du -h "$rootfs" | cut -f1)" >&2
}
