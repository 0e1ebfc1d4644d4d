#!/usr/bin/env bash
# Regenerates the README's CLI tour from real output.
#
#   scripts/readme-tour.sh            print every block of the tour
#   scripts/readme-tour.sh --write    also put each block into README.md
#
# Each block of the tour is the code block right after a line
# `<!-- tour:NAME -->` in README.md. The commands run against a scratch
# store (`BGTASK_HOME=$(mktemp -d)`) in /tmp/demo, with the bgtask named by
# BGTASK_BIN (default: the release build, else the debug build, else the
# one on PATH). `bgtask top` is started in a tmux pane and captured with
# `tmux capture-pane`. Needs tmux and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
write=false
[ "${1:-}" = "--write" ] && write=true

bin="${BGTASK_BIN:-}"
for candidate in "$root/target/x86_64-unknown-linux-gnu/release/bgtask" \
                 "$root/target/x86_64-unknown-linux-gnu/debug/bgtask"; do
  [ -z "$bin" ] && [ -x "$candidate" ] && bin="$candidate"
done
[ -z "$bin" ] && bin="$(command -v bgtask)"
shim="$(mktemp -d)"
ln -s "$bin" "$shim/bgtask"
export PATH="$shim:$PATH"

blocks="$root/target/tour"
rm -rf "$blocks" && mkdir -p "$blocks"
mkdir -p /tmp/demo && cd /tmp/demo
export BGTASK_HOME="$(mktemp -d)"
export COLUMNS=100
unset BGTASK_SESSION
sock="bgtask-tour-$$"
cleanup() {
  tmux -L "$sock" kill-server 2>/dev/null || true
  bgtask kill --all --all-sessions --grace 0s >/dev/null 2>&1 || true
  rm -rf "$shim"
}
trap cleanup EXIT

block=""
start() { block="$blocks/$1"; : > "$block"; }
# Prints a command and its real output (stdout and stderr) into the block.
show() {
  { echo "\$ $*"; eval "$@" 2>&1 || true; echo; } >> "$block"
}
# Waits until a task is in one of the given statuses.
wait_status() {
  local id="$1"; shift
  for _ in $(seq 500); do
    local s
    s=$(bgtask --json status --tail 0 "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.02
  done
  echo "task $id never reached $*" >&2; exit 1
}

start run
show "bgtask run -- 'for i in 1 2 3; do echo \"step \$i\"; sleep 1; done; echo \"all done\" >&2'"
FIRST=$(sed -n 2p "$block")
show "bgtask run --wait 10s -- 'echo hello'"
show "bgtask run --wait 10s -- false; echo \"exit=\$?\""
show "bgtask --json run -- 'echo building; sleep 1; exit 2'"
BUILD=$(bgtask --json list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["task_id"])')
show "bgtask run -- printf '%s\\n' 'a b' \"it's\""

start status
PROGRESS=$(bgtask run -- 'printf "\033[1;32mDownloading\033[0m\n"; for p in 10 40 70 100; do printf "\r[%-10s] %3d%%" "$(printf "#%.0s" $(seq $((p/10))))" $p; sleep 0.1; done; echo; echo saved')
wait_status "$PROGRESS" completed
show "bgtask status $PROGRESS"
show "bgtask status --raw $PROGRESS | sed -n '/^output/,\$p'"

start list
mkdir -p "$HOME/src/agent-project/services/api"
(cd "$HOME/src/agent-project/services/api" && BGTASK_SESSION=claude-1f3a bgtask run -- 'sleep 600' >/dev/null 2>&1 || true)
show "bgtask list"
show "bgtask list --all-sessions"
show "COLUMNS=80 bgtask list --all-sessions"

start logs
wait_status "$FIRST" completed
show "bgtask logs $FIRST"
show "bgtask logs --stream stderr $FIRST"
show "bgtask logs --tail 7 --stream stdout $FIRST"
FOLLOW=$(bgtask run -- 'for i in 1 2; do echo "tick $i"; sleep 0.5; done; exit 3')
show "bgtask logs --follow $FOLLOW; echo \"exit=\$?\""

start wait
A=$(bgtask run -- 'sleep 1.5; echo tests passed')
B=$(bgtask run -- 'sleep 0.5; echo "error: linking failed" >&2; exit 1')
C=$(bgtask run -- 'sleep 1; echo lint ok')
show "bgtask wait $A $B $C; echo \"exit=\$?\""
SRV=$(bgtask run -- 'npm_like_server() { echo listening; sleep 600; }; npm_like_server')
wait_status "$SRV" running
show "bgtask wait --timeout 1s $SRV; echo \"exit=\$?\""

start kill
show "bgtask kill $SRV"

start top
TOPA=$(bgtask run -- 'for i in $(seq 1 1000); do echo "compiling crate $i/1000"; sleep 0.2; done')
bgtask run --timeout 2s -- 'echo started; sleep 60' >/dev/null
sleep 2.5
tmux -L "$sock" -f /dev/null new-session -d -s top -x 100 -y 24 \
  "env BGTASK_HOME='$BGTASK_HOME' HOME='$HOME' TERM=xterm-256color '$bin' top --all-sessions"
for _ in $(seq 200); do
  tmux -L "$sock" capture-pane -p -t top | grep -q "compiling crate" && break
  sleep 0.05
done
sleep 0.5
# Select the first row (the newest live task) so its output shows.
tmux -L "$sock" send-keys -t top g
sleep 0.5
{ echo "\$ bgtask top --all-sessions"; tmux -L "$sock" capture-pane -p -t top | sed 's/[[:space:]]*$//'; } >> "$blocks/top"
tmux -L "$sock" send-keys -t top q

start completions
show "bgtask completions"
echo '$ bgtask --json completions      # first element, pretty-printed' >> "$block"
bgtask --json completions | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0], indent=2))' >> "$block"
echo >> "$block"

start ack
show "bgtask ack $FIRST $BUILD"
show "bgtask ack --all"
show "bgtask completions"

start gc
show "bgtask gc"
show "bgtask gc --older-than 0s"

# The scratch store's path changes each run: name it as the README does.
for f in "$blocks"/*; do
  sed -i "s|$BGTASK_HOME|/tmp/tmp.STORE|g; s|$HOME|~|g" "$f"
  # No trailing blank line inside a code block.
  python3 - "$f" <<'EOF'
import sys
p = sys.argv[1]
text = open(p).read().rstrip("\n") + "\n"
open(p, "w").write(text)
EOF
done

for f in "$blocks"/*; do
  echo "=== $(basename "$f")"
  cat "$f"
done

if $write; then
  python3 - "$root/README.md" "$blocks" <<'EOF'
import os, re, sys
readme, blocks = sys.argv[1], sys.argv[2]
text = open(readme).read()
def fill(m):
    name = m.group(1)
    path = os.path.join(blocks, name)
    if not os.path.exists(path):
        sys.exit(f"README names tour block {name!r}, which the script did not make")
    return f"<!-- tour:{name} -->\n```\n{open(path).read()}```"
new, n = re.subn(r"<!-- tour:([a-z]+) -->\n```[^\n]*\n.*?```", fill, text, flags=re.S)
open(readme, "w").write(new)
print(f"README.md: {n} tour blocks written", file=sys.stderr)
EOF
fi
