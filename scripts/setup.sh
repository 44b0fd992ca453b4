#!/usr/bin/env bash
# Installs what volchain needs on a Debian machine with Node 20 (run as root), then builds it.
# Safe to run again: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: program -> package providing it.
declare -A needs=(
  [qemu-img]=qemu-utils
  [qemu-io]=qemu-utils
  [flock]=util-linux
  [losetup]=mount
  [mkfs.ext4]=e2fsprogs
  [qemu-system-x86_64]=qemu-system-x86
  [lvm]=lvm2
  [thin_check]=thin-provisioning-tools
  [xz]=xz-utils
  [lvmlockd]=lvm2-lockd
  [sanlock]=sanlock
)
missing=()
for prog in "${!needs[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${needs[$prog]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 20) { console.error("setup: volchain needs Node 20 or newer, found " + process.version); process.exit(1); }'
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
echo "setup: ready (node bin/volchain.js --help)"
