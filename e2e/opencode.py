"""End-to-end scenarios for OpenCode (opencode-ai, pinned in run.py's
PINNED) with bgtask's plugin (integrations/opencode/bgtask.ts), run by
run.py with its helpers (`scenarios(bgtask, run)`).

OpenCode talks to the scripted model (model_server.py, Chat Completions)
through an openai-compatible provider in the user's config; `bgtask setup
opencode` writes the project's opencode.json (the MCP server) and the
plugin. Checks:
- `opencode run`: the model's bash call reaches bgtask through MCP; the
  plugin holds the end of the turn while the task runs and adds its
  completion to the same run; the model is told once; nothing is left
  unacknowledged;
- a server started with a readiness condition: the plugin tells the
  model it is ready (a `ready` notification, not a completion) in the same
  run, once, and the run ends while the server keeps running (OpenCode
  SIGTERMs every descendant of its MCP server when `opencode run` exits;
  a task's monitor is not one, issue 17), ended only by bgtask;
- a restart: a completion recorded while no OpenCode ran is delivered by
  the next `opencode run`, once;
- told once across a restart: the plugin posts a completion and is kept
  from acknowledging it (the test fault point BGTASK_OPENCODE_FAULT=
  skip_ack, as if OpenCode died in between); the next `opencode run` finds
  the post in the stored messages and acknowledges it without a second;
- the TUI under tmux: an idle session wakes by itself when the task ends.
"""

import json
import os
import shutil
import subprocess
import time


def scenarios(bgtask, run):
    """The scenarios, as callables; `run` is run.py's module (its check,
    Scenario and tmux helpers)."""
    return [
        lambda: opencode_run(bgtask, run),
        lambda: opencode_ready(bgtask, run),
        lambda: opencode_restart(bgtask, run),
        lambda: opencode_tui(bgtask, run),
        lambda: opencode_once(bgtask, run),
    ]


NAMES = ["run", "ready", "restart", "tui", "once"]


# OpenCode installs `@opencode-ai/plugin` with npm into every `.opencode`
# directory before it loads plugins (about 40 s in a new project, 20 s when
# it is there already): one copy is cached here and put into each scratch
# project, as a project that already ran OpenCode has it.
PLUGIN_DEPS = "@opencode-ai/plugin"


def plugin_deps(run):
    """The cached `.opencode` dependencies (installed once), or None."""
    version = run.PINNED["opencode-ai"]
    prefix = os.path.join(run.NPM_DIR, "opencode-plugin-deps")
    marker = os.path.join(prefix, "node_modules", PLUGIN_DEPS, "package.json")
    try:
        with open(marker) as f:
            if json.load(f).get("version") == version:
                return prefix
    except (OSError, ValueError):
        pass
    os.makedirs(prefix, exist_ok=True)
    done = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "--loglevel", "error",
                           f"{PLUGIN_DEPS}@{version}"], capture_output=True, text=True, timeout=600)
    return prefix if done.returncode == 0 else None


def seed_plugin_deps(s, run):
    prefix = plugin_deps(run)
    if prefix is None:
        return
    dest = os.path.join(s.project, ".opencode")
    os.makedirs(dest, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        if os.path.exists(os.path.join(prefix, name)):
            shutil.copy(os.path.join(prefix, name), os.path.join(dest, name))
    shutil.copytree(os.path.join(prefix, "node_modules"), os.path.join(dest, "node_modules"), symlinks=True)


def configure(s, run):
    """What a person sets up once: the model provider (here the scripted
    server) in the user's config; then `bgtask setup opencode`."""
    seed_plugin_deps(s, run)
    config_dir = os.path.join(s.home, ".config", "opencode")
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(config_dir, "opencode.json"), "w") as f:
        json.dump({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"scripted": {
                "npm": "@ai-sdk/openai-compatible", "name": "Scripted",
                "options": {"baseURL": f"{s.url}/v1", "apiKey": run.API_KEY},
                "models": {"m": {"name": "m", "tool_call": True}},
            }},
            "model": "scripted/m", "small_model": "scripted/m",
            "autoupdate": False, "share": "disabled",
        }, f)
    s.setup("opencode")
    env = dict(s.env, OPENCODE_DISABLE_AUTOUPDATE="1", OPENCODE_DISABLE_MODELS_FETCH="1",
               BGTASK_OPENCODE_LOG=os.path.join(s.root, "plugin.log"))
    return env


def plugin_log(s, tail=3000):
    """The plugin's log (BGTASK_OPENCODE_LOG), its end by default."""
    try:
        with open(os.path.join(s.root, "plugin.log")) as f:
            return f.read()[-tail:] if tail else f.read()
    except OSError:
        return ""


def opencode_run(bgtask, run):
    s = run.Scenario("opencode-run", bgtask)
    try:
        env = configure(s, run)
        # `#`: OpenCode quotes the message it sends; the quote is a comment.
        done = subprocess.run(["opencode", "run", f"RUN: {s.command} #"], cwd=s.project, env=env,
                              capture_output=True, text=True, timeout=run.RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        run.check(done.returncode == 0, f"{s.name}: opencode run exits 0", done.stderr[-2000:])
        answers = [r["answer"] for r in s.requests()]
        run.check(" start " in plugin_log(s, tail=None), f"{s.name}: OpenCode loaded the plugin", done.stderr[-2000:])
        run.check(["text", "WAITING"] in answers, f"{s.name}: the model ended its turn while the task ran",
                  (answers, plugin_log(s)))
        log = plugin_log(s, tail=None)
        run.check("text complete" in log and "promptAsync" in log,
                  f"{s.name}: the plugin held the turn's end and posted the completion",
                  "\n".join(line[:300] for line in log.splitlines() if "session.status" not in line)[-3000:])
        s.verify(done.stdout)
    finally:
        s.close()


def opencode_ready(bgtask, run):
    """`opencode run` with a server started with a readiness condition:
    the plugin delivers the `ready` notification (not only completions) in
    the same run, once, and, the server ready, holds nothing more; the
    server outlives the run (OpenCode 1.18 sends SIGTERM to every
    descendant of its MCP server when `opencode run` exits) until bgtask
    ends it."""
    s = run.Scenario("opencode-ready", bgtask)
    try:
        env = configure(s, run)
        s.marker = "E2E-SERVER-opencode"
        server = f"sleep 3; echo {s.marker} listening on 8123; sleep 600"
        # OpenCode adds a quote to the message's end (see opencode_run): the
        # regular expression's second branch takes it, never a line.
        started = time.time()
        done = subprocess.run(["opencode", "run", f"SERVE: {server} UNTIL: listening on|#"], cwd=s.project, env=env,
                              capture_output=True, text=True, timeout=run.RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        took = time.time() - started
        run.check(done.returncode == 0, f"{s.name}: opencode run exits 0", done.stderr[-2000:])
        listed = s.bgtask("list", "--all-sessions", "--json")
        tasks = [t for t in json.loads(listed.stdout or "[]") if s.marker in t.get("command", "")]
        run.check(len(tasks) == 1 and tasks[0]["session"] == f"dir:{s.project}",
                  f"{s.name}: the model's bash call with ready reached bgtask", listed.stdout)
        if not tasks:
            return
        task_id = tasks[0]["task_id"]
        answers = [r["answer"] for r in s.requests()]
        woke = [a for a in answers if a[0] == "text" and a[1].startswith("NOTIFIED-READY") and task_id in a[1]]
        run.check(len(woke) == 1, f"{s.name}: the plugin told the model the server is ready, in the same run, once",
                  (answers, plugin_log(s)))
        run.check(took < 300, f"{s.name}: once ready the server held the run no more ({took:.0f} s)", tasks[0])
        # OpenCode signalled its MCP server's descendants as it exited: the
        # task, not one of them, still runs (no end within 2 s), and ends
        # only when bgtask kills it.
        waited = s.bgtask("wait", task_id, "--timeout", "2s")
        run.check(tasks[0]["status"] == "running" and waited.returncode == 124,
                  f"{s.name}: the server outlives `opencode run`", (tasks[0], waited.stdout, waited.stderr))
        killed = s.bgtask("kill", "--json", "--grace", "0ms", task_id)
        end = json.loads(killed.stdout or "{}")
        run.check(end.get("status") == "killed" and end.get("reason") == "killed on request",
                  f"{s.name}: bgtask ends it, and records that end", killed.stdout + killed.stderr)
        requests = s.requests()
        last = json.dumps(requests[-1]["body"]) if requests else ""
        shown = last.count(f"[ready] {task_id} is ready")
        run.check(shown == 1, f"{s.name}: the conversation holds the ready notification exactly once", shown)
        pending = s.bgtask("notifications", "--json", session=f"dir:{s.project}")
        left = [n for n in json.loads(pending.stdout or "[]") if n.get("kind") != "completed"]
        run.check(left == [], f"{s.name}: the ready notification is acknowledged", pending.stdout)
    finally:
        s.close()


def opencode_restart(bgtask, run):
    """A task ends while no OpenCode runs; the next run is told."""
    s = run.Scenario("opencode-restart", bgtask)
    try:
        env = configure(s, run)
        session = f"dir:{s.project}"
        started = s.bgtask("run", "--json", "--", s.command, session=session)
        task_id = json.loads(started.stdout or "{}").get("task_id", "")
        waited = s.bgtask("wait", task_id, session=session)
        run.check(started.returncode == 0 and waited.returncode == 0,
                  f"{s.name}: a task of the project's session ended before OpenCode started",
                  started.stderr + waited.stderr)
        done = subprocess.run(["opencode", "run", "hello"], cwd=s.project, env=env,
                              capture_output=True, text=True, timeout=run.RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        run.check(done.returncode == 0, f"{s.name}: opencode run exits 0", done.stderr[-2000:])
        answers = [r["answer"] for r in s.requests()]
        notified = [a for a in answers if a[0] == "text" and a[1].startswith("NOTIFIED") and task_id in a[1]]
        run.check(len(notified) == 1, f"{s.name}: the completion recorded before the start reached the model, once",
                  (answers, plugin_log(s)))
        run.check("NOTIFIED" in done.stdout, f"{s.name}: the CLI shows the model's answer", done.stdout[-2000:])
        pending = s.bgtask("notifications", "--json", session=session)
        run.check(json.loads(pending.stdout or "[]") == [], f"{s.name}: nothing is left unacknowledged",
                  pending.stdout)
    finally:
        s.close()


def opencode_once(bgtask, run):
    """A completion posted but not acknowledged (the fault point makes
    the plugin skip the acknowledgement, as if OpenCode died between the
    two) is not told again by the next run: it is found in the stored
    messages and acknowledged."""
    s = run.Scenario("opencode-once", bgtask)
    try:
        env = configure(s, run)
        session = f"dir:{s.project}"
        done = subprocess.run(["opencode", "run", f"RUN: {s.command} #"], cwd=s.project,
                              env=dict(env, BGTASK_OPENCODE_FAULT="skip_ack"),
                              capture_output=True, text=True, timeout=run.RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        run.check(done.returncode == 0, f"{s.name}: the first opencode run exits 0", done.stderr[-2000:])
        listed = s.bgtask("list", "--all-sessions", "--json")
        tasks = [t for t in json.loads(listed.stdout or "[]") if s.marker in t.get("command", "")]
        task_id = tasks[0]["task_id"] if tasks else "none"
        told = lambda: [a for a in (r["answer"] for r in s.requests())
                        if a[0] == "text" and a[1].startswith("NOTIFIED") and task_id in a[1]]
        run.check(len(told()) == 1, f"{s.name}: the first run told the model", plugin_log(s))
        pending = s.bgtask("completions", "--json", session=session)
        run.check([c.get("task_id") for c in json.loads(pending.stdout or "[]")] == [task_id],
                  f"{s.name}: the fault left the completion unacknowledged", pending.stdout)
        again = subprocess.run(["opencode", "run", "hello"], cwd=s.project, env=env,
                               capture_output=True, text=True, timeout=run.RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        run.check(again.returncode == 0, f"{s.name}: the second opencode run exits 0", again.stderr[-2000:])
        run.check(len(told()) == 1, f"{s.name}: the second run did not tell it again",
                  ([r["answer"] for r in s.requests()], plugin_log(s)))
        run.check("already posted" in plugin_log(s, tail=None), f"{s.name}: the plugin found its earlier post",
                  plugin_log(s))
        pending = s.bgtask("completions", "--json", session=session)
        run.check(json.loads(pending.stdout or "[]") == [], f"{s.name}: nothing is left unacknowledged",
                  pending.stdout)
    finally:
        s.close()


def opencode_tui(bgtask, run):
    """An idle interactive OpenCode under tmux wakes when the task ends."""
    if shutil.which("tmux") is None:
        run.check(False, "opencode-tui: tmux is installed")
        return
    s = run.Scenario("opencode-tui", bgtask)
    tmux = f"bgtask-e2e-opencode-{os.getpid()}"
    try:
        env = configure(s, run)
        exports = " ".join(f"{k}={run.shlex_quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "new-session", "-d", "-s", tmux, "-x", "200", "-y", "50",
                        f"cd {run.shlex_quote(s.project)} && env {exports} opencode; sleep 600"], check=True)
        # The TUI draws once the terminal answers its queries; a key press
        # makes tmux redraw. The prompt box shows the current model.
        ready = run.wait_for(lambda: "Scripted" in run.pane(tmux), 45)
        if not ready:
            subprocess.run(["tmux", "send-keys", "-t", tmux, "x", "BSpace"])
            ready = run.wait_for(lambda: "Scripted" in run.pane(tmux), 45)
        run.check(ready, f"{s.name}: the TUI starts", run.pane(tmux))
        # The plugin's server must be up before the task ends.
        run.wait_for(lambda: "frame ready" in plugin_log(s, tail=None), 60)
        run.type_prompt(tmux, f"RUN: {s.command}", s)
        waited = run.wait_for(lambda: any(r["answer"] == ["text", "WAITING"] for r in s.requests()), 60)
        run.check(waited, f"{s.name}: the turn ended while the task ran", run.pane(tmux))
        woke = run.wait_for(lambda: any(r["answer"][1].startswith("NOTIFIED") for r in s.requests()), 90)
        run.check(woke, f"{s.name}: the idle session woke by itself when the task ended", (run.pane(tmux), plugin_log(s)))
        run.wait_for(lambda: "NOTIFIED" in run.pane(tmux), 20)
        s.verify(run.pane(tmux))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tmux], capture_output=True)
        s.close()


def main(argv):
    """Runs only these scenarios: `python3 e2e/opencode.py BGTASK [COUNT
    [NAME…]]` (NAME: run, ready, restart, tui, once), e.g. to repeat one
    under load."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run
    bgtask = os.path.abspath(argv[1])
    count = int(argv[2]) if len(argv) > 2 else 1
    names = argv[3:] or NAMES
    why = run.install_clis()
    if why:
        print(f"skipped: {why}")
        return 0 if os.environ.get("BGTASK_E2E_REQUIRED") != "1" else 1
    table = dict(zip(NAMES, scenarios(bgtask, run)))
    for i in range(count):
        for name in names:
            before = len(run.FAILED)
            try:
                table[name]()
            except Exception as e:  # one broken scenario must not hide the others
                run.check(False, f"opencode-{name} raised {type(e).__name__}", e)
            print(f"round {i + 1} {name}: {'FAILED' if len(run.FAILED) > before else 'ok'}", flush=True)
    print(f"e2e (opencode): {len(run.PASSED)} passed, {len(run.FAILED)} failed")
    return 1 if run.FAILED else 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))
