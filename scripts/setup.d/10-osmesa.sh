#!/usr/bin/env bash
# Meta-World stores render offscreen with MuJoCo; on CPU (CI) that is OSMesa: Debian's libosmesa6.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q 'libOSMesa\.so'; then
  echo "10-osmesa: libosmesa6 already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq libosmesa6 >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1
  apt-get install -y -qq libosmesa6 >/dev/null 2>&1 || { echo "10-osmesa: apt-get install libosmesa6 failed" >&2; exit 1; }
fi
echo "10-osmesa: installed libosmesa6"
