#!/usr/bin/env bash
# Installs what Clickstream needs on a fresh Debian machine (idempotent, quiet when done):
# system packages (Redis, Chromium + driver, Java 17, Maven), the venv with the project, and
# the Kafka jars. Root (or sudo) is needed only for missing system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if ((${#need[@]})); then
  echo "bootstrap: installing ${need[*]}"
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
 # Debian's package may start a system Redis on 6379; ours runs on its own.
  if [[ " ${need[*]} " == *" redis-server "* ]]; then
    "${sudo_cmd[@]}" service redis-server stop >/dev/null 2>&1 || true
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv and installing the project"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # setuptools ends every editable install with a multi-line "Editable installation" warning
  # that is only information (pypa/packaging-problems#558); a new user takes it for a failure.
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/pip install -q -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

.venv/bin/python -c "from clickstream.local.kafka import fetch_jars, jar_cache; fetch_jars(jar_cache())"
