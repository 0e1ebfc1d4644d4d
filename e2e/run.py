#!/usr/bin/env python3
"""End-to-end suite: the real Claude Code, Codex and Gemini CLIs (pinned
versions from npm, cached) against a scripted model server on 127.0.0.1
(model_server.py), each set up with `bgtask setup` in a scratch project
with a scratch HOME and store.

What each scenario checks:
- the model's call of bgtask's `bash` tool reaches bgtask (the task is in
  the store, in the session of the project directory);
- the background task's completion reaches the model in the same run (a
  request carries the notification and the model answers NOTIFIED);
  for interactive Claude Code and Codex under tmux: the idle session
  wakes by itself;
- nothing is delivered twice (the last request holds the notification
  once; the session has nothing left unacknowledged);
- a server started with a readiness condition (`claude -p`, `codex exec`,
  `gemini -p`) wakes the model when it is ready, once, and then holds
  nothing: the run ends while the server keeps running.

Usage: e2e/run.py BGTASK_BINARY
Environment: BGTASK_E2E_NPM (install dir, default /var/cache/bgtask-e2e/npm);
BGTASK_E2E_REQUIRED=1 (CI): fail instead of skipping when npm is unreachable.
Prints one line per check and closes with "N passed, N failed".
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PINNED = {
    "@anthropic-ai/claude-code": "2.1.332",
    "@openai/codex": "0.171.0",
    "@google/gemini-cli": "0.61.0",
    "opencode-ai": "1.18.33",
}
HERE = os.path.dirname(os.path.abspath(__file__))
NPM_DIR = os.environ.get("BGTASK_E2E_NPM", "/var/cache/bgtask-e2e/npm")
RUN_TIMEOUT = 180
API_KEY = "sk-test-0123456789abcdef"

PASSED = []
FAILED = []


def check(cond, what, detail=""):
    if cond:
        PASSED.append(what)
        print(f"ok: {what}", flush=True)
    else:
        FAILED.append(what)
        print(f"FAILED: {what}" + (f"\n  {str(detail)[:3000]}" if detail != "" else ""), flush=True)
    return cond


def installed_version(package):
    try:
        with open(os.path.join(NPM_DIR, "node_modules", package, "package.json")) as f:
            return json.load(f).get("version")
    except OSError:
        return None


def install_clis():
    """Installs the pinned CLIs into NPM_DIR unless they are there; returns
    None, or why they cannot be had."""
    missing = [f"{p}@{v}" for p, v in PINNED.items() if installed_version(p) != v]
    if not missing:
        return None
    if shutil.which("npm") is None:
        return "npm is not installed"
    os.makedirs(NPM_DIR, exist_ok=True)
    print(f"installing {' '.join(missing)} into {NPM_DIR} (about 900 MB, cached)", flush=True)
    run = subprocess.run(
        ["npm", "install", "--prefix", NPM_DIR, "--no-audit", "--no-fund", "--loglevel", "error"]
        + [f"{p}@{v}" for p, v in PINNED.items()],
        capture_output=True, text=True, timeout=1500,
    )
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        return "npm install failed (registry unreachable?): " + " | ".join(tail)
    return None


class Scenario:
    """A scratch HOME, project, store and model server for one run."""

    def __init__(self, name, bgtask):
        self.name = name
        self.root = tempfile.mkdtemp(prefix=f"bgtask-e2e-{name}-")
        self.home = os.path.join(self.root, "home")
        self.project = os.path.join(self.root, "project")
        self.store = os.path.join(self.root, "store")
        bindir = os.path.join(self.root, "bin")
        for d in (self.home, self.project, bindir):
            os.makedirs(d)
        self.project = os.path.realpath(self.project)
        os.symlink(os.path.abspath(bgtask), os.path.join(bindir, "bgtask"))
        self.log = os.path.join(self.root, "model.jsonl")
        port_file = os.path.join(self.root, "port")
        self.server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "model_server.py"), self.log, port_file],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.root, "server.err"), "w"),
        )
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if time.time() > deadline or self.server.poll() is not None:
                raise RuntimeError("the model server did not start")
            time.sleep(0.02)
        self.port = int(open(port_file).read())
        self.url = f"http://127.0.0.1:{self.port}"
        self.marker = f"E2E-DONE-{name}"
        self.command = f"sleep 3; echo {self.marker}"
        path = os.pathsep.join([bindir, os.path.join(NPM_DIR, "node_modules", ".bin"), os.environ.get("PATH", "")])
        self.env = {
            "PATH": path, "HOME": self.home, "BGTASK_HOME": self.store, "TERM": "xterm-256color",
            "LANG": "C.UTF-8", "NO_BROWSER": "1", "CI": "1",
        }

    def bgtask(self, *args, session=None):
        env = dict(self.env)
        if session:
            env["BGTASK_SESSION"] = session
        return subprocess.run(["bgtask", *args], cwd=self.project, env=env, capture_output=True, text=True, timeout=60)

    def setup(self, agent):
        run = self.bgtask("setup", agent)
        check(run.returncode == 0, f"{self.name}: bgtask setup {agent}", run.stderr)

    def requests(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def close(self):
        # End every task the scenario left running, then the server.
        self.bgtask("kill", "--all", "--all-sessions", "--grace", "0ms")
        self.server.terminate()
        self.server.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def verify(self, output=""):
        """The three checks every scenario makes."""
        session = f"dir:{self.project}"
        listed = self.bgtask("list", "--all-sessions", "--json")
        tasks = [t for t in json.loads(listed.stdout or "[]") if self.marker in t.get("command", "")]
        check(len(tasks) == 1 and tasks[0]["session"] == session,
              f"{self.name}: the model's bash call reached bgtask (one task, in the project's session)",
              listed.stdout)
        if not tasks:
            return
        task_id = tasks[0]["task_id"]
        requests = self.requests()
        answers = [r["answer"] for r in requests]
        notified = [i for i, a in enumerate(answers) if a[0] == "text" and a[1].startswith("NOTIFIED") and task_id in a[1]]
        check(len(notified) == 1, f"{self.name}: the task's completion reached the model in the same run, once",
              [a for a in answers])
        if output:
            check("NOTIFIED" in output, f"{self.name}: the CLI shows the model's answer to the notification", output[-2000:])
        last = json.dumps(requests[-1]["body"]) if requests else ""
        shown = len(re.findall(r"finished:(?:\\n|\s)+- " + task_id, last)) + len(
            re.findall(r'notifications\\?"\s*:\s*\[[^\]]*' + task_id, last))
        check(shown == 1, f"{self.name}: the conversation holds the notification exactly once", shown)
        pending = self.bgtask("completions", "--json", session=session)
        check(json.loads(pending.stdout or "[]") == [], f"{self.name}: nothing is left unacknowledged", pending.stdout)


def claude_env(s):
    env = dict(s.env)
    env.update({
        "ANTHROPIC_BASE_URL": s.url, "ANTHROPIC_API_KEY": API_KEY, "ENABLE_TOOL_SEARCH": "false",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
    })
    return env


def claude_print(bgtask, stream_json):
    s = Scenario("claude-stream-json" if stream_json else "claude-p", bgtask)
    try:
        s.setup("claude-code")
        args = ["claude", "-p", f"RUN: {s.command}", "--allowedTools", "mcp__bgtask__bash"]
        if stream_json:
            args += ["--output-format", "stream-json", "--verbose"]
        run = subprocess.run(args, cwd=s.project, env=claude_env(s), capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        check(run.returncode == 0, f"{s.name}: claude exits 0", run.stderr[-2000:])
        s.verify(run.stdout)
    finally:
        s.close()


def claude_interactive(bgtask):
    """An idle interactive Claude Code under tmux wakes when the task ends."""
    if shutil.which("tmux") is None:
        check(False, "claude-tmux: tmux is installed")
        return
    s = Scenario("claude-tmux", bgtask)
    tmux = f"bgtask-e2e-{os.getpid()}"
    try:
        s.setup("claude-code")
        # What a person does once: approve the project's MCP server and the
        # tool, trust the folder, accept the API key.
        with open(os.path.join(s.project, ".claude", "settings.local.json"), "w") as f:
            json.dump({"permissions": {"allow": ["mcp__bgtask__bash"]}, "enableAllProjectMcpServers": True}, f)
        with open(os.path.join(s.home, ".claude.json"), "w") as f:
            json.dump({"hasCompletedOnboarding": True, "theme": "dark",
                       "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
                       "projects": {s.project: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}}}, f)
        env = claude_env(s)
        exports = " ".join(f"{k}={shlex_quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "new-session", "-d", "-s", tmux, "-x", "200", "-y", "50",
                        f"cd {shlex_quote(s.project)} && env {exports} claude; sleep 600"], check=True)
        # MCP servers connect after the prompt appears: wait for the store
        # the server opens, then for the prompt.
        wait_for(lambda: os.path.exists(os.path.join(s.store, "bgtask.db")), 60)
        wait_for(lambda: "❯" in pane(tmux), 60)
        type_prompt(tmux, f"RUN: {s.command}", s)
        # The turn ends (WAITING) while the task still runs: the session is idle.
        waited = wait_for(lambda: any(r["answer"] == ["text", "WAITING"] for r in s.requests()), 60)
        check(waited, f"{s.name}: the turn ended while the task ran", pane(tmux))
        woke = wait_for(lambda: any(r["answer"][1].startswith("NOTIFIED") for r in s.requests()), 90)
        check(woke, f"{s.name}: the idle session woke by itself when the task ended", pane(tmux))
        wait_for(lambda: "NOTIFIED" in pane(tmux), 20)
        s.verify(pane(tmux))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tmux], capture_output=True)
        s.close()


def codex_config(s):
    """The user's Codex config: the scripted model, no approvals, the
    project trusted (what a person sets up once)."""
    os.makedirs(os.path.join(s.home, ".codex"))
    with open(os.path.join(s.home, ".codex", "config.toml"), "w") as f:
        f.write(
            'model = "gpt-5"\nmodel_provider = "scripted"\napproval_policy = "never"\n'
            'sandbox_mode = "danger-full-access"\n\n'
            f'[model_providers.scripted]\nname = "scripted"\nbase_url = "{s.url}/v1"\n'
            'wire_api = "responses"\nenv_key = "SCRIPTED_API_KEY"\n\n'
            f'[projects."{s.project}"]\ntrust_level = "trusted"\n'
        )
    return dict(s.env, SCRIPTED_API_KEY=API_KEY)


def codex_interactive(bgtask):
    """An idle interactive Codex under tmux wakes when the task ends: its
    Stop hook leaves a waiter that delivers with `codex queue --thread`."""
    if shutil.which("tmux") is None:
        check(False, "codex-tmux: tmux is installed")
        return
    s = Scenario("codex-tmux", bgtask)
    tmux = f"bgtask-e2e-codex-{os.getpid()}"
    try:
        s.setup("codex")
        env = codex_config(s)
        exports = " ".join(f"{k}={shlex_quote(v)}" for k, v in env.items())
        subprocess.run(["tmux", "new-session", "-d", "-s", tmux, "-x", "200", "-y", "50",
                        f"cd {shlex_quote(s.project)} && env {exports} codex --dangerously-bypass-hook-trust; sleep 600"],
                       check=True)
        wait_for(lambda: "Ask Codex" in pane(tmux), 60)
        type_prompt(tmux, f"RUN: {s.command}", s)
        waited = wait_for(lambda: any(r["answer"] == ["text", "WAITING"] for r in s.requests()), 60)
        check(waited, f"{s.name}: the turn ended while the task ran", pane(tmux))
        woke = wait_for(lambda: any(r["answer"][1].startswith("NOTIFIED") for r in s.requests()), 90)
        check(woke, f"{s.name}: the idle session woke by itself when the task ended (codex queue)", pane(tmux))
        wait_for(lambda: "NOTIFIED" in pane(tmux), 20)
        s.verify(pane(tmux))
    finally:
        subprocess.run(["tmux", "kill-session", "-t", tmux], capture_output=True)
        s.close()


def codex_exec(bgtask):
    s = Scenario("codex-exec", bgtask)
    try:
        s.setup("codex")
        env = codex_config(s)
        run = subprocess.run(
            ["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-hook-trust", f"RUN: {s.command}"],
            cwd=s.project, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        check(run.returncode == 0, f"{s.name}: codex exec exits 0", run.stderr[-2000:])
        s.verify(run.stdout)
    finally:
        s.close()


def gemini_print(bgtask):
    s = Scenario("gemini-p", bgtask)
    try:
        s.setup("gemini")
        env = gemini_config(s)
        run = subprocess.run(["gemini", "-p", f"RUN: {s.command}", "--yolo"], cwd=s.project, env=env,
                             capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        check(run.returncode == 0, f"{s.name}: gemini exits 0", run.stderr[-2000:])
        check("uint64" not in run.stderr, f"{s.name}: no schema warnings about uint64", run.stderr[-2000:])
        s.verify(run.stdout)
    finally:
        s.close()


def gemini_config(s):
    """The user's Gemini settings: API-key auth against the scripted model,
    no trust prompt, no updates or telemetry."""
    os.makedirs(os.path.join(s.home, ".gemini"))
    with open(os.path.join(s.home, ".gemini", "settings.json"), "w") as f:
        json.dump({"security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
                   "general": {"disableAutoUpdate": True}, "privacy": {"usageStatisticsEnabled": False},
                   "telemetry": {"enabled": False}}, f)
    return dict(s.env, GEMINI_API_KEY=API_KEY, GOOGLE_GEMINI_BASE_URL=s.url)


def readiness(bgtask, cli):
    """A server started with a readiness condition (`bash` with `ready` and
    `background`) wakes the agent when it is ready, in the same run, once;
    once ready it holds nothing: the run ends while the server still runs."""
    s = Scenario(f"ready-{cli}", bgtask)
    try:
        s.marker = f"E2E-SERVER-{cli}"
        server = f"sleep 3; echo {s.marker} listening on 8123; sleep 600"
        prompt = f"SERVE: {server} UNTIL: listening on"
        if cli == "claude-p":
            s.setup("claude-code")
            args, env = ["claude", "-p", prompt, "--allowedTools", "mcp__bgtask__bash"], claude_env(s)
        elif cli == "codex-exec":
            s.setup("codex")
            env = codex_config(s)
            args = ["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-hook-trust", prompt]
        else:
            s.setup("gemini")
            env = gemini_config(s)
            args = ["gemini", "-p", prompt, "--yolo"]
        started = time.time()
        run = subprocess.run(args, cwd=s.project, env=env, capture_output=True, text=True,
                             timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        took = time.time() - started
        check(run.returncode == 0, f"{s.name}: the CLI exits 0", run.stderr[-2000:])
        listed = s.bgtask("list", "--all-sessions", "--json")
        tasks = [t for t in json.loads(listed.stdout or "[]") if s.marker in t.get("command", "")]
        check(len(tasks) == 1 and tasks[0]["session"] == f"dir:{s.project}",
              f"{s.name}: the model's bash call with ready reached bgtask", listed.stdout)
        if not tasks:
            return
        task_id = tasks[0]["task_id"]
        answers = [r["answer"] for r in s.requests()]
        woke = [a for a in answers if a[0] == "text" and a[1].startswith("NOTIFIED-READY") and task_id in a[1]]
        check(len(woke) == 1, f"{s.name}: the server's readiness woke the model in the same run, once", answers)
        check("NOTIFIED-READY" in run.stdout, f"{s.name}: the CLI shows the model's answer to it", run.stdout[-2000:])
        check(tasks[0]["status"] == "running" and took < 300,
              f"{s.name}: once ready the server holds nothing: the run ended ({took:.0f} s) while it runs",
              tasks[0])
        requests = s.requests()
        last = json.dumps(requests[-1]["body"]) if requests else ""
        shown = len(re.findall(r"\[ready\] " + task_id + " is ready", last))
        check(shown == 1, f"{s.name}: the conversation holds the ready notification exactly once", shown)
        pending = s.bgtask("notifications", "--json", session=f"dir:{s.project}")
        check(json.loads(pending.stdout or "[]") == [], f"{s.name}: nothing is left unacknowledged", pending.stdout)
    finally:
        s.close()


def shlex_quote(text):
    import shlex

    return shlex.quote(text)


def type_prompt(tmux, text, s):
    """Types `text` into the TUI, waits until the pane shows it (the input
    box took it), then presses Enter until the model server sees the
    prompt's tool call: a TUI may take the first Enter as part of a paste."""
    subprocess.run(["tmux", "send-keys", "-t", tmux, "-l", text], check=True)
    wait_for(lambda: text in pane(tmux), 30)
    for _ in range(5):
        subprocess.run(["tmux", "send-keys", "-t", tmux, "Enter"], check=True)
        if wait_for(lambda: any(r["answer"][0] == "tool" for r in s.requests()), 5):
            return


def pane(session):
    run = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return run.stdout


def wait_for(cond, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def main():
    bgtask = os.path.abspath(sys.argv[1])
    why = install_clis()
    if why:
        if os.environ.get("BGTASK_E2E_REQUIRED") == "1":
            print(f"FAILED: the agent CLIs cannot be installed: {why}")
            return 1
        print(f"skipped: end-to-end suite: {why}")
        return 0
    scenarios = [
        lambda: claude_print(bgtask, stream_json=False),
        lambda: claude_print(bgtask, stream_json=True),
        lambda: codex_exec(bgtask),
        lambda: gemini_print(bgtask),
        lambda: claude_interactive(bgtask),
        lambda: codex_interactive(bgtask),
        lambda: readiness(bgtask, "claude-p"),
        lambda: readiness(bgtask, "codex-exec"),
        lambda: readiness(bgtask, "gemini-p"),
    ] + __import__("opencode").scenarios(bgtask, sys.modules[__name__])
    for scenario in scenarios:
        try:
            scenario()
        except Exception as e:  # one broken scenario must not hide the others
            check(False, f"scenario raised {type(e).__name__}", e)
    print(f"e2e: {len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
