#!/bin/bash
# Regenerates the README's CLI tour; prints each command and its real output.
mkdir -p /tmp/demo && cd /tmp/demo
export BGTASK_HOME=$(mktemp -d)
unset BGTASK_SESSION
show() { echo "\$ $*"; eval "$@" 2>&1; echo; }
show "bgtask run -- 'for i in 1 2 3; do echo \"step \$i\"; sleep 1; done; echo \"all done\" >&2'" | tee /tmp/tour.first
FIRST=$(sed -n 2p /tmp/tour.first)
show "bgtask run --wait 10s -- 'echo hello'"
show "bgtask --json run --wait 10s -- 'echo building; exit 2'"
sleep 1.3
echo "=== STATUS"
show "bgtask status $FIRST"
echo "=== LIST"
show "bgtask list"
bgtask run --timeout 1s -- 'echo started; sleep 60' >/dev/null
bgtask run --timeout 2s -- 'sleep 60' >/dev/null
sleep 2.5
echo "=== WAIT"
show "bgtask wait $FIRST; echo \"exit=\$?\""
echo "=== LIST2"
show "bgtask list --status timed_out"
echo "=== LOGS"
show "bgtask logs $FIRST"
show "bgtask logs --stream stderr $FIRST"
show "bgtask logs --tail 7 --stream stdout $FIRST"
SRV=$(bgtask run -- 'npm_like_server() { echo listening; sleep 600; }; npm_like_server')
sleep 0.3
show "bgtask wait --timeout 1s $SRV; echo \"exit=\$?\""
echo "=== KILL"
show "bgtask kill $SRV"
echo "=== COMPLETIONS"
show "bgtask completions"
echo "=== COMPJSON"
bgtask --json completions | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0], indent=2))'
echo "=== ACK"
IDS=$(bgtask --json completions | python3 -c 'import json,sys; print(" ".join(c["task_id"] for c in json.load(sys.stdin)))')
set -- $IDS
show "bgtask ack $1 $2"
shift 2
show "bgtask --json ack $*"
show "bgtask completions"
echo "=== GC"
show "bgtask gc"
show "bgtask gc --older-than 0s"
