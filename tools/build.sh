#!/usr/bin/env bash
# Configures and builds zfly into build/ (or $ZF_BUILD). Extra arguments go to cmake, e.g.
#   tools/build.sh -DZF_WERROR=ON
set -euo pipefail
cd "$(dirname "$0")/.."
build=${ZF_BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
