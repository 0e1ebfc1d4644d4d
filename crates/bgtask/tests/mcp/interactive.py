"""Interactive tasks through `bgtask mcp` (issue 18), driven by the
official MCP Python SDK: `bash` with stdin and pty, `bash_write`,
`bash_signal`, and the screen view of `bash_status`; input still reaches a
task after the server that started it is gone. Run by
tests/mcp/interactive.rs; prints one line per check.

Usage: interactive.py BGTASK_BINARY WORKDIR
"""

import asyncio
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters

BIN, WORKDIR = sys.argv[1], sys.argv[2]
STEP_TIMEOUT = 30


def check(cond, what, detail=None):
    if not cond:
        print(f"FAILED: {what}" + (f": {detail}" if detail is not None else ""), flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def server():
    params = StdioServerParameters(command=BIN, args=["mcp"], cwd=WORKDIR, env=dict(os.environ))
    return params


async def until(what, probe):
    """Calls `probe` until it returns something true (the task answers)."""
    with anyio.fail_after(STEP_TIMEOUT):
        while True:
            got = await probe()
            if got:
                return got
            await anyio.sleep(0.05)


async def main():
    from mcp.client.stdio import stdio_client

    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            for name in ["bash_write", "bash_signal"]:
                check(name in tools, f"tool {name} is listed")
            check("prompt" in tools["bash_write"].description, "bash_write tells a model it answers prompts", tools["bash_write"].description)
            check("INT" in tools["bash_signal"].description and "gracefully" in tools["bash_signal"].description,
                  "bash_signal tells a model INT stops a server gracefully", tools["bash_signal"].description)
            props = tools["bash"].input_schema.get("properties", {})
            check("stdin" in props and "pty" in props, "bash takes stdin and pty", props.keys())
            check("view" in tools["bash_status"].input_schema.get("properties", {}), "bash_status takes view")

            # A prompt under a terminal, answered, its screen read.
            r = await session.call_tool("bash", {
                "command": "read -r -p 'continue? [y/N] ' a; echo \"answer: $a\"; sleep 300",
                "pty": {"rows": 10, "cols": 60}, "background": True})
            check(not r.is_error, "a pty task starts", text_of(r))
            task = r.structured_content["task_id"]

            async def prompt_shown():
                s = await session.call_tool("bash_status", {"task_id": task, "view": "screen"})
                return s if "continue? [y/N]" in text_of(s) else None
            s = await until("the prompt", prompt_shown)
            check(s.structured_content["screen"]["rows"] == 10, "the screen has the asked size", s.structured_content["screen"])
            w = await session.call_tool("bash_write", {"task_id": task, "data": "y", "keys": ["enter"]})
            check(not w.is_error and w.structured_content["written"] == 2, "bash_write sends the answer", text_of(w))

            async def answered():
                s = await session.call_tool("bash_status", {"task_id": task, "view": "screen"})
                return s if "answer: y" in text_of(s) else None
            await until("the answer", answered)
            check(True, "the program got the answer")
            sig = await session.call_tool("bash_signal", {"task_id": task, "signal": "INT"})
            check(not sig.is_error and "SIGINT" in text_of(sig), "bash_signal sends INT", text_of(sig))
            done = await session.call_tool("bash_wait", {"task_ids": [task], "timeout_ms": 30000})
            t = done.structured_content["tasks"][0]
            check(t["reason"] == "ended by SIGINT sent with bgtask signal", "the end says who sent the signal", t)

            # A stdin pipe, written by this server...
            r = await session.call_tool("bash", {
                "command": "while read -r l; do echo \"got $l\"; done", "stdin": True, "background": True})
            piped = r.structured_content["task_id"]
            await session.call_tool("bash_write", {"task_id": piped, "data": "first\n"})

            plain = await session.call_tool("bash", {"command": "sleep 300", "background": True})
            refused = await session.call_tool("bash_write", {"task_id": plain.structured_content["task_id"], "data": "x"})
            check(refused.is_error and "takes no input" in text_of(refused), "a task without stdin refuses input", text_of(refused))
            check(refused.structured_content["error"]["kind"] == "not_interactive", "the refusal has a kind")
            await session.call_tool("bash_kill", {"task_id": plain.structured_content["task_id"]})

    # ... and by the next one, after the first is gone.
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            w = await session.call_tool("bash_write", {"task_id": piped, "data": "second", "keys": ["enter"], "eof": True})
            check(not w.is_error and w.structured_content["closed"], "a new server writes and closes the input", text_of(w))
            done = await session.call_tool("bash_wait", {"task_ids": [piped], "timeout_ms": 30000})
            check(done.structured_content["tasks"][0]["status"] == "completed", "the task ends at end of input", done.structured_content)
            out = await session.call_tool("bash_output", {"task_id": piped})
            check(out.structured_content["data"] == "got first\ngot second\n", "both servers' input arrived in order", out.structured_content)


asyncio.run(main())
print("ALL CHECKS PASSED", flush=True)
