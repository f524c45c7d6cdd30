#!/usr/bin/env bash
# Installs every Debian 12 package that zfly's build, tests and benchmarks need, so a fresh
# machine needs nothing else. Safe to run again: it only installs what is missing.
# Needs root (or sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang clang-format clang-tidy libclang-rt-14-dev
  libczmq-dev libzmq3-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev libhiredis-dev
  libmariadb-dev libinih-dev libjansson-dev libmicrohttpd-dev libsystemd-dev libhttp-parser-dev
  libxxhash-dev libsqlite3-dev
  # tests
  python3 python3-zmq python3-msgpack prometheus iproute2 procps systemd
  # manager tests start their own MariaDB server
  mariadb-server mariadb-client
  # preheat tests start their own Redis (the job queue in cluster mode)
  redis-server redis-tools
  # proxy tests: a real registry, real clients, an image builder
  docker-registry skopeo containerd docker.io umoci python3-cryptography
  # the console's browser tests (tests/test_console.py): Debian's Chromium, Node.js for
  # playwright-core and axe-core (installed below from tests/console/package-lock.json)
  chromium chromium-driver nodejs
  # benchmarks and testbed (tools/testbed/zfly-testbed)
  curl iputils-ping nginx aria2 mktorrent opentracker gnuplot-nox
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
# The console's test dependencies from the npm registry, at the versions the lockfile pins
# (playwright-core drives the Chromium above: it downloads no browser of its own).
console_tests() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/console"
  if (cd "$dir" && node -e '
    const pins = require("./package.json").dependencies;
    for (const [name, version] of Object.entries(pins))
      if (require(`./node_modules/${name}/package.json`).version !== version) process.exit(1);
  ' 2>/dev/null); then
    return
  fi
  echo "setup: npm ci in tests/console"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  console_tests
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Packages such as prometheus and redis-server ship services; we start our own instances.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
console_tests
echo "setup: done"
