#!/bin/sh
# usage: promtool_check.sh PROMTOOL COMMAND [ARGS...]
#
# Runs COMMAND and lints its standard output with `promtool check metrics`. Fails when COMMAND
# fails or prints nothing, when promtool exits non-zero (1 for a parse error, 3 for lint
# problems in 2.42), and when promtool prints anything at all, so a future promtool that only
# warns still fails the test.
set -u
promtool=$1
shift
metrics=$(mktemp) || exit 1
trap 'rm -f "$metrics"' EXIT
if ! "$@" >"$metrics"; then
    echo "FAIL: '$*' failed"
    exit 1
fi
if [ ! -s "$metrics" ]; then
    echo "FAIL: '$*' printed no metrics"
    exit 1
fi
report=$("$promtool" check metrics <"$metrics" 2>&1)
status=$?
if [ "$status" -ne 0 ] || [ -n "$report" ]; then
    echo "FAIL: promtool check metrics exited $status:"
    printf '%s\n' "$report"
    echo "--- metrics ---"
    cat "$metrics"
    exit 1
fi
echo "promtool check metrics: clean ($(wc -l <"$metrics") lines)"
