#!/usr/bin/env bash
# Idempotent set-up: Debian packages (only the missing ones), the virtualenv, the package.
set -euo pipefail
APT_PACKAGES=${APT_PACKAGES:-"aria2 postgresql prometheus prometheus-alertmanager prometheus-pushgateway rclone redis-server"}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

missing=()
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages' own services (prometheus on 0.0.0.0:9090, redis,
  # postgres) from starting: we run our own on 127.0.0.1 and free ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# requirements.lock pins the versions the tests and the images use (`make lock` renews it).
"$VENV/bin/python" -m pip install -q -e ".[dev]" --constraint requirements.lock
echo "setup: ready ($("$VENV/bin/python" --version), $("$VENV/bin/crypto-lakehouse" --version 2>/dev/null || echo 'cli not built'))"
