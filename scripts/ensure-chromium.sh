#!/usr/bin/env bash
# Makes sure Debian's chromium is installed, for the report's headless-browser test
# (tests/report_browser.rs). Installs it with apt-get when it is missing; that needs root,
# which CI machines have. Prints the browser's path on success.
set -euo pipefail
find_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}
bin=$(find_chromium)
if [ -z "$bin" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-chromium.sh: chromium is missing and installing it needs root: run 'sudo apt-get install -y chromium'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
  bin=$(find_chromium)
fi
if [ -z "$bin" ]; then
  echo "ensure-chromium.sh: chromium was installed but is not on PATH" >&2
  exit 1
fi
echo "$bin"
