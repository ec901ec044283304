#!/usr/bin/env bash
# Install and start a local Docker engine for the docker-sandbox tests. Idempotent.
# The daemon runs without a bridge (containers use network "none"); nothing is pulled.
set -u
if docker info >/dev/null 2>&1; then
  echo "setup-docker: a Docker daemon is already running"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 || ! command -v bwrap >/dev/null 2>&1; then
  echo "setup-docker: installing docker.io, debootstrap, bubblewrap"
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap bubblewrap) >/dev/null; then
    echo "setup-docker: could not install docker.io (need root and the Debian registry); docker tests will be skipped" >&2
    exit 1
  fi
fi
log="${TMPDIR:-/tmp}/atebench-dockerd.log"
nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
echo "$!" > "${TMPDIR:-/tmp}/atebench-dockerd.pid"
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "setup-docker: dockerd is ready (pid $(cat "${TMPDIR:-/tmp}/atebench-dockerd.pid"), log $log)"
    exit 0
  fi
  sleep 0.5
done
echo "setup-docker: dockerd did not become ready in 30 s; see $log" >&2
exit 1
