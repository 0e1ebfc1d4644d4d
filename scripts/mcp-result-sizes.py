#!/usr/bin/env python3
"""Sizes of typical `bgtask mcp` tool results: what a client that shows the
model only `structuredContent` (Claude Code, Codex) puts in its context, and
the text a client such as Gemini shows. Standard library only.

Usage: scripts/mcp-result-sizes.py BGTASK_BINARY
Runs in a scratch store and directory; prints one line per result.
"""

import json
import os
import subprocess
import sys
import tempfile


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="bgtask-sizes-")
    env = dict(os.environ, BGTASK_HOME=os.path.join(work, "store"))
    env.pop("BGTASK_SESSION", None)
    proc = subprocess.Popen(
        [binary, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work, env=env, text=True
    )
    next_id = [0]

    def request(method, params):
        next_id[0] += 1
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": next_id[0], "method": method, "params": params}) + "\n")
        proc.stdin.flush()
        while True:
            line = json.loads(proc.stdout.readline())
            if line.get("id") == next_id[0]:
                return line

    request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "sizes", "version": "1"}})
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    proc.stdin.flush()

    tools = request("tools/list", {})["result"]["tools"]
    schemas = json.dumps([t["inputSchema"] for t in tools])
    print(f"{'tools/list input schemas':44} {len(schemas):6} bytes, uint64 formats: {schemas.count('uint64')}")

    rows = []

    def call(label, name, args):
        result = request("tools/call", {"name": name, "arguments": args})["result"]
        structured = json.dumps(result.get("structuredContent"), separators=(",", ":"))
        text = "".join(c.get("text", "") for c in result["content"])
        rows.append((label, len(structured), len(text)))
        return result.get("structuredContent") or {}

    call("bash inline (echo)", "bash", {"command": "echo hello"})
    call("bash inline (100 lines of ls -l)", "bash", {"command": "ls -l /usr/bin | head -100"})
    call("bash failing (exit 3, stderr)", "bash", {"command": "echo oops >&2; exit 3"})
    bg = call("bash background", "bash", {"command": "sleep 0.2; echo done", "background": True})
    task_id = bg["task_id"]
    call("bash_wait (opens with its notification)", "bash_wait", {"task_ids": [task_id], "timeout_ms": 10000})
    call("bash_status", "bash_status", {"task_id": task_id})
    call("bash_list (5 tasks)", "bash_list", {})
    call("bash_kill (ended task)", "bash_kill", {"task_id": task_id})
    proc.stdin.close()
    proc.wait(timeout=30)
    print(f"{'result':44} {'structuredContent':>17} {'text':>6}")
    for label, structured, text in rows:
        print(f"{label:44} {structured:17} {text:6}")


if __name__ == "__main__":
    main()
