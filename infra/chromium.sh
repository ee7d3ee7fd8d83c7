#!/usr/bin/env bash
# infra/chromium.sh install — Debian's Chromium and ChromeDriver (/usr/bin/chromium,
# /usr/bin/chromedriver) for the dashboard's browser test; apt-get as root, or through
# sudo. A no-op when both are there.
set -euo pipefail

install() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return
  local apt=(apt-get)
  [ "$(id -u)" = 0 ] || apt=(sudo apt-get)
  echo "chromium: installing Debian's chromium and chromium-driver (once)" >&2
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq chromium chromium-driver >/dev/null
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: infra/chromium.sh install" >&2; exit 2 ;;
esac
