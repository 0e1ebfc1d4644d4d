#!/usr/bin/env bash
# Keeps OS calls in the platform folder: fails when `rustix::` or `libc::`
# appears in Rust code outside crates/bgtask-core/src/process/ (see the
# platform contract in crates/bgtask-core/src/process/mod.rs). A port to
# another platform then changes that folder only.
#
# Known exceptions, each for a reason:
#   crates/bgtask/src/main.rs   the entry point: before anything else runs it
#                               reopens closed standard descriptors and sets
#                               SIGPIPE, which no library call can do for it
#   crates/bench/               the benchmark measures bgtask from outside
#                               (clocks, thread ids, signals to monitors), as
#                               a user's tools would
#   crates/bgtask/tests/        the integration and fault-injection tests act
#                               on processes from outside (SIGKILL a monitor,
#                               hold a lock, shrink a pipe)
set -euo pipefail
cd "$(dirname "$0")/.."

allowed='^(crates/bgtask-core/src/process/|crates/bgtask/src/main\.rs$|crates/bench/|crates/bgtask/tests/)'

found=$(git ls-files -- '*.rs' |
  grep -Ev "$allowed" |
  xargs -r grep -nE '\b(rustix|libc)::' -- || true)

if [ -n "$found" ]; then
  echo "OS calls outside crates/bgtask-core/src/process/ (add a function to the"
  echo "platform contract in process/mod.rs and call that instead):"
  echo "$found"
  exit 1
fi
echo "os calls: only in crates/bgtask-core/src/process/ (and the listed exceptions)"
