"""A scripted MCP session against `bgtask mcp`, driven by the official MCP
Python SDK. Run by tests/mcp/main.rs; exits non-zero on the first failed
check and prints one line per step.

Usage: session.py BGTASK_BINARY WORKDIR
"""

import asyncio
import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.client import Client

BIN, WORKDIR = sys.argv[1], sys.argv[2]
STEP_TIMEOUT = 60


def check(cond, what, detail=None):
    if not cond:
        print(f"FAILED: {what}" + (f": {detail}" if detail is not None else ""), flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


SEEN = []
INTRUDER = os.environ.get("OTHER_SESSION_TASK", "")


async def call(session, name, args):
    """Calls a tool and remembers everything it showed the model."""
    result = await session.call_tool(name, args)
    SEEN.append(text_of(result) + json.dumps(result.structured_content))
    return result


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def main():
    updates = []
    updated = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)
            updated.set()

    params = StdioServerParameters(command=BIN, args=["mcp"], cwd=WORKDIR, env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            check(init.server_info.name == "bgtask", "server identifies as bgtask", init.server_info)

            tools = {t.name: t for t in (await session.list_tools()).tools}
            for name in ["bash", "bash_status", "bash_output", "bash_kill", "bash_list", "bash_wait"]:
                check(name in tools, f"tool {name} is listed")
            check("command" in tools["bash"].input_schema.get("properties", {}), "bash has a schema with command")
            check(len(tools["bash"].description or "") > 40, "bash has a description written for a model")
            schemas = json.dumps([t.input_schema for t in tools.values()])
            check("uint64" not in schemas, "input schemas carry no uint64 format (Gemini warns on it)", schemas)

            # Inline: the command ends inside the window.
            r = await call(session, "bash", {"command": "echo hello from mcp"})
            check(not r.is_error, "inline bash succeeds", text_of(r))
            check("hello from mcp" in text_of(r), "inline output is in the text", text_of(r))
            sc = r.structured_content
            check(sc["status"] == "completed" and sc["exit_code"] == 0, "structuredContent has status and exit_code", sc)
            check(sc["task_id"] in text_of(r), "the text names the task id")
            check("hello from mcp" in sc["output"], "the output is in structuredContent (all Claude Code and Codex show)", sc)
            check(not any(k in sc for k in ("cwd", "session", "stdout_path", "env_keys", "monitor_pid")), "structuredContent is lean", sc)

            failed = await call(session, "bash", {"command": "echo oops >&2; exit 3"})
            check(failed.is_error, "a non-zero exit is an error result", text_of(failed))
            check(failed.structured_content["exit_code"] == 3, "exit code 3 is reported")

            # Background: returns at once with a task id.
            go = os.path.join(WORKDIR, "go")
            bg = await call(session, 
                "bash",
                {"command": f"echo started; while [ ! -e {go} ]; do sleep 0.05; done; echo finished", "background": True},
            )
            bg_id = bg.structured_content["task_id"]
            check(bg.structured_content["background"] is True and bg_id in text_of(bg), "background bash returns a task id", bg.structured_content)
            check("you will be told when it ends" in bg.structured_content["note"].lower() and bg_id in bg.structured_content["note"], "structuredContent carries the guidance", bg.structured_content)
            uri = f"bgtask://tasks/{bg_id}"

            # Resources: listed, readable, subscribable.
            resources = (await session.list_resources()).resources
            check(any(str(res.uri) == uri for res in resources), "the task is a resource", [str(x.uri) for x in resources])
            read = await session.read_resource(uri)
            body = json.loads(read.contents[0].text)
            check(body["task_id"] == bg_id and body["status"] in ("starting", "running"), "the resource reads as the task's status", body)
            await session.subscribe_resource(uri)
            updates.clear()
            updated = anyio.Event()

            # The task ends; the next tool result opens with its completion.
            open(go, "w").close()
            waited = await call(session, "bash_wait", {"task_ids": [bg_id], "timeout_ms": 30000})
            check(waited.structured_content["timed_out"] is False, "bash_wait returns when the task ends", waited.structured_content)
            check(waited.structured_content["tasks"][0]["status"] == "completed", "bash_wait shows completed")
            listed = await call(session, "bash_list", {})
            full = text_of(waited) + text_of(listed)
            check("background task" in full and bg_id in full, "a later result carries the completion block", full)
            shown = (waited.structured_content.get("notifications") or []) + (listed.structured_content.get("notifications") or [])
            check(sum(1 for c in shown if c["task_id"] == bg_id) == 1, "the completion is shown exactly once", shown)
            again = await call(session, "bash_list", {})
            check("background task" not in text_of(again), "an acknowledged completion is not shown again", text_of(again))

            with anyio.fail_after(STEP_TIMEOUT):
                await updated.wait()
            check(uri in updates, "resources/updated arrives for the subscribed task", updates)

            out = await call(session, "bash_output", {"task_id": bg_id})
            check(out.structured_content["data"] == "started\nfinished\n" and out.structured_content["eof"], "bash_output reads the output", out.structured_content)
            status = await call(session, "bash_status", {"task_id": bg_id})
            check(status.structured_content["exit_code"] == 0, "bash_status reports the exit code")

            # Promotion: a command that outlives the window.
            slow = await call(session, "bash", {"command": "sleep 300", "wait_ms": 200})
            slow_id = slow.structured_content["task_id"]
            check(slow.structured_content["background"] is True, "a slow command moves to the background", slow.structured_content)
            killed = await call(session, "bash_kill", {"task_id": slow_id})
            check(killed.structured_content["status"] == "killed", "bash_kill stops it", killed.structured_content)
            check(killed.structured_content["exit_code"] in (137, 143), "killed exit code is 128+signal")

            # bash_wait with no ids: returns when any running task ends.
            quick = await call(session, "bash", {"command": "sleep 0.3", "background": True})
            anyw = await call(session, "bash_wait", {"timeout_ms": 30000})
            check(not anyw.structured_content["timed_out"], "bash_wait without ids waits for any task", anyw.structured_content)

            # Invalid arguments are refused with a clear error.
            try:
                bad = await call(session, "bash", {"command": 42})
                check(bad.is_error, "a wrong argument type is an error", text_of(bad))
            except Exception as e:  # a JSON-RPC error is fine too
                check("command" in str(e) or "invalid" in str(e).lower(), "a wrong argument type is refused", e)
            missing = await call(session, "bash_status", {"task_id": "bg-00000000000000aa"})
            check(missing.is_error and "bg-00000000000000aa" in text_of(missing), "an unknown task id is an error naming it", text_of(missing))
            check(missing.structured_content["error"]["kind"] == "task_not_found", "the error has a kind")
            try:
                await call(session, "no_such_tool", {})
                check(False, "an unknown tool is refused")
            except Exception as e:
                check(True, f"an unknown tool is refused ({type(e).__name__})")


async def modern():
    """The 2026-07-28 protocol: discovery instead of initialize, and the
    subscriptions/listen stream instead of resources/subscribe."""
    params = StdioServerParameters(command=BIN, args=["mcp"], cwd=WORKDIR, env=dict(os.environ))
    async with Client(params, mode="auto") as client:
        check(client.protocol_version >= "2026-07-28", "a modern client negotiates 2026-07-28", client.protocol_version)
        go = os.path.join(WORKDIR, "go-modern")
        started = await client.call_tool(
            "bash", {"command": f"while [ ! -e {go} ]; do sleep 0.05; done", "background": True}
        )
        uri = f"bgtask://tasks/{started.structured_content['task_id']}"
        with anyio.fail_after(STEP_TIMEOUT):
            async with client.listen(resource_subscriptions=[uri]) as sub:
                check(uri in (sub.honored.resource_subscriptions or []), "listen honours a task URI", sub.honored)
                open(go, "w").close()
                event = await sub.__anext__()
                check(uri in str(event), "listen delivers resources/updated for the task", event)


async def restart():
    """A task started by one server finishes while no server runs; the next
    server started in the same directory reports its completion."""
    params = StdioServerParameters(command=BIN, args=["mcp"], cwd=WORKDIR, env=dict(os.environ))
    go = os.path.join(WORKDIR, "go-restart")
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            started = await session.call_tool(
                "bash", {"command": f"while [ ! -e {go} ]; do sleep 0.05; done; echo survived", "background": True}
            )
            task_id = started.structured_content["task_id"]
    open(go, "w").close()
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            with anyio.fail_after(STEP_TIMEOUT):
                while True:
                    r = await session.call_tool("bash_wait", {"task_ids": [task_id], "timeout_ms": 30000})
                    shown = [c["task_id"] for c in (r.structured_content.get("notifications") or [])]
                    if r.structured_content["tasks"][0]["status"] != "running":
                        break
            check(task_id in shown, "a restarted server in the same directory reports the earlier task's completion", r.structured_content)
            check("survived" in text_of(r), "the completion block shows the task's last output", text_of(r))
            note = [c for c in r.structured_content["notifications"] if c["task_id"] == task_id][0]
            check("survived" in note["output_tail"], "the structured notification carries the last output lines", note)


asyncio.run(main())
check(INTRUDER != "" and not any(INTRUDER in text for text in SEEN), "another session's completion never reaches this session's results")
asyncio.run(modern())
asyncio.run(restart())
print("ALL CHECKS PASSED", flush=True)
