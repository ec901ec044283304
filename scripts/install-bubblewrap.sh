#!/usr/bin/env bash
# Bubblewrap isolates every agent in the local sandbox (docs/harness.md, "Threat model"); atebench does
# not run agents without it unless told --no-isolate. Installs it from the system's packages if missing.
set -u
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null 2>&1; then
  run=(sudo)
else
  echo "install-bubblewrap: bwrap is missing and this user cannot install packages; ask for 'bubblewrap'" \
       "to be installed, or use --sandbox docker" >&2
  exit 1
fi
if command -v apt-get >/dev/null 2>&1; then
  "${run[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq bubblewrap >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  "${run[@]}" dnf install -y -q bubblewrap
elif command -v apk >/dev/null 2>&1; then
  "${run[@]}" apk add -q bubblewrap
else
  echo "install-bubblewrap: no apt-get, dnf or apk here; install the 'bubblewrap' package yourself" >&2
  exit 1
fi
command -v bwrap >/dev/null 2>&1 || { echo "install-bubblewrap: bwrap is still missing" >&2; exit 1; }
echo "install-bubblewrap: installed $(bwrap --version)"
