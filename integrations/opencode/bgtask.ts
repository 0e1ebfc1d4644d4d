// bgtask for OpenCode: tells the agent when its background tasks end.
//
// Installed by `bgtask setup opencode` into `.opencode/plugin/` (or the
// user's `~/.config/opencode/plugin/`), beside the MCP server entry for
// `bgtask mcp` in opencode.json. It runs `bgtask serve` (JSON lines, see
// docs/protocol.md) for the session `bgtask mcp` uses in this directory
// (`dir:<project>`, or BGTASK_SESSION), and delivers the session's
// notifications (task completions, readiness outcomes, watch matches) into
// the OpenCode session as a user message:
//
// - when the OpenCode session is idle: at once (this wakes the agent);
// - when it is busy: once it goes idle;
// - under `opencode run`, where the run ends as soon as the session is
//   idle: the end of the model's turn is held while tasks that notify still
//   run (at most BGTASK_HOOK_WAIT, default 10 minutes), and the next
//   notification is added to the turn, which then continues.
//
// A notification is acknowledged (`bgtask ack ID`, by notification id)
// only once OpenCode has stored the message that carries it; until then it
// stays in bgtask's store and is delivered again (a failed delivery is
// retried, a restarted OpenCode re-reads what is pending), so none is lost.
// Each message ends with the keys of the notifications it carries
// (`[bgtask ids: c:3@bg-… n:4@bg-…]`), and before posting the plugin looks
// for them in the stored messages of the project's sessions: one found
// there was told already (OpenCode died between storing the message and
// the acknowledgement) and is acknowledged without a second post. So none
// is told twice either.
//
// No runtime dependencies: only Node's built-ins (OpenCode runs plugins
// with Bun) and a type import that is erased. The file exports the plugin
// only: OpenCode calls every exported function as a plugin.

import type { Plugin } from "@opencode-ai/plugin"
import { spawn, execFile, type ChildProcess } from "node:child_process"
import { realpathSync, appendFileSync } from "node:fs"
import { createInterface } from "node:readline"

// The bgtask executable (`bgtask setup` writes its own path here when
// `bgtask` is not on the PATH).
const BGTASK_COMMAND = "bgtask"

/** At most this many bytes of notifications per message. */
const MESSAGE_BUDGET = 8000
/** How long a posted message may take to show up stored. */
const STORED_WAIT_MS = 15_000
/** Retry delays of a failed delivery, then the last one repeats. */
const RETRY_MS = [500, 1000, 2000, 5000, 10000, 30000]

type Json = any

/** Debug log (BGTASK_OPENCODE_LOG=FILE); never the model's context. */
function log(...parts: unknown[]) {
  const file = process.env.BGTASK_OPENCODE_LOG
  if (!file) return
  try {
    const text = parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ")
    appendFileSync(file, `${new Date().toISOString()} ${text}\n`)
  } catch {}
}

/**
 * The session `bgtask mcp` uses in `dir` (crates/bgtask/src/mcp/mod.rs,
 * `session_of_dir`): `dir:<real path>`; a path that is not valid UTF-8
 * gives `dir-bytes:` with each invalid byte written `\xNN` and each
 * backslash doubled.
 */
function sessionOfDir(dir: string): string {
  let bytes: Buffer
  try {
    bytes = realpathSync(dir, { encoding: "buffer" }) as unknown as Buffer
  } catch {
    bytes = Buffer.from(dir)
  }
  try {
    return "dir:" + new TextDecoder("utf-8", { fatal: true }).decode(bytes)
  } catch {}
  let out = "dir-bytes:"
  let i = 0
  while (i < bytes.length) {
    const n = validSequence(bytes, i)
    if (n === 0) {
      out += "\\x" + bytes[i].toString(16).padStart(2, "0")
      i += 1
    } else {
      out += bytes.subarray(i, i + n).toString("utf8").replace(/\\/g, "\\\\")
      i += n
    }
  }
  return out
}

/** The length of the valid UTF-8 sequence at `i`, or 0. */
function validSequence(b: Buffer, i: number): number {
  const c = b[i]
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi
  if (c < 0x80) return 1
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0
  return 0
}

/** BGTASK_HOOK_WAIT (`90s`, `2m`, `none`): how long a turn may be held. */
function holdLimitMs(text = process.env.BGTASK_HOOK_WAIT): number {
  const value = (text ?? "").trim()
  if (value === "") return 600_000
  if (value === "none" || value === "0") return 0
  const m = /^(\d+)\s*(ms|s|m|h)?$/.exec(value)
  if (!m) return 600_000
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? "s"] ?? 1000
  return Number(m[1]) * unit
}

/** `bgtask serve`, restarted if it dies. */
class Serve {
  private child?: ChildProcess
  private next = 1
  private pending = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>()
  private restartTimer?: ReturnType<typeof setTimeout>
  private closed = false

  constructor(
    private session: string,
    private directory: string,
    private onFrame: (method: string, params: Json) => void,
  ) {}

  start() {
    if (this.closed) return
    const child = spawn(BGTASK_COMMAND, ["serve"], {
      cwd: this.directory,
      env: { ...process.env, BGTASK_SESSION: this.session },
      stdio: ["pipe", "pipe", "pipe"],
    })
    this.child = child
    child.on("error", (e) => log("serve error", String(e)))
    child.stderr?.on("data", (d) => log("serve stderr", String(d).trim()))
    createInterface({ input: child.stdout! }).on("line", (line) => this.line(line))
    child.on("exit", (code) => {
      log("serve exited", code)
      for (const p of this.pending.values()) p.reject(new Error("bgtask serve exited"))
      this.pending.clear()
      if (this.child === child) this.child = undefined
      if (!this.closed) this.restartTimer = setTimeout(() => this.start(), 1000)
    })
    // Pipelined after initialize (a barrier): acts for the session.
    this.call("initialize", { session: this.session, project_root: this.directory, long_running_interval_ms: 0 })
      .then(() => this.onFrame("ready", {}))
      .catch((e) => log("initialize failed", String(e)))
  }

  call(method: string, params: Json = {}): Promise<Json> {
    const child = this.child
    if (!child?.stdin?.writable) return Promise.reject(new Error("bgtask serve is not running"))
    const id = this.next++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      child.stdin!.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n")
    })
  }

  private line(line: string) {
    let msg: Json
    try {
      msg = JSON.parse(line)
    } catch {
      return
    }
    if (msg.id === undefined || msg.id === null) {
      if (msg.method) this.onFrame(msg.method, msg.params)
      return
    }
    const p = this.pending.get(msg.id)
    if (!p) return
    this.pending.delete(msg.id)
    if (msg.error) p.reject(new Error(msg.error.message))
    else p.resolve(msg.result)
  }

  close() {
    this.closed = true
    clearTimeout(this.restartTimer)
    this.child?.stdin?.end()
  }
}

/** Acknowledges exactly these notifications (`bgtask ack c:N n:M`). */
function ack(session: string, ids: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(BGTASK_COMMAND, ["ack", ...ids], { env: { ...process.env, BGTASK_SESSION: session } }, (err, _out, stderr) =>
      err ? reject(new Error(String(stderr).trim() || String(err))) : resolve(),
    )
  })
}

/**
 * The message that tells the model: the completions first (one entry
 * each), then the other kinds (`ready`, `ready_failed`, `watch_match`) as
 * `- [kind] summary` lines, as MCP results and the hooks show them.
 */
function messageText(notes: Json[]): string {
  const ended = notes.filter((n) => n.kind === "completed")
  const others = notes.filter((n) => n.kind !== "completed")
  let text = ""
  if (ended.length) text += completionsText(ended)
  if (others.length) {
    if (text) text += "\n"
    text += "[bgtask] notifications:\n"
    for (const n of others) text += `- [${n.kind}] ${String(n.summary ?? n.task_id).slice(0, 400)}\n`
  }
  text += "(bash_status TASK_ID shows a task's whole record and output.)\n"
  return text + `[bgtask ids: ${notes.map(keyOf).join(" ")}]`
}

function completionsText(notes: Json[]): string {
  const noun = notes.length === 1 ? "task" : "tasks"
  let text = `[bgtask] ${notes.length} background ${noun} finished:\n`
  for (const n of notes) {
    const d = n.detail ?? {}
    let line = `- ${n.task_id} ${d.status ?? "ended"}`
    if (d.exit_code !== null && d.exit_code !== undefined) line += ` (exit ${d.exit_code}${d.signal ? ", " + d.signal : ""})`
    if (typeof d.duration_ms === "number") line += ` after ${(d.duration_ms / 1000).toFixed(1)}s`
    if (d.reason) line += `; ${d.reason}`
    line += `. Command: ${String(d.command ?? "").replace(/\s*\n\s*/g, " ")}\n`
    const tail = String(d.output_preview ?? "").trimEnd()
    if (tail) line += `  last output:\n${tail.split("\n").map((l) => "    " + l).join("\n")}\n`
    text += line
  }
  return text
}

/** The notifications that fit one message (the first always). */
function fitting(notes: Json[]): Json[] {
  const out: Json[] = []
  let room = MESSAGE_BUDGET
  for (const n of notes) {
    const size = JSON.stringify(n).length
    if (out.length && size > room) break
    out.push(n)
    room -= size
  }
  return out
}

/** A notification's key in a message: its id and its task. */
function keyOf(n: Json): string {
  return `${n.notification_id}@${n.task_id}`
}

/** The line that ends a message: the keys of what it carries. */
const KEYS_LINE = /\[bgtask ids: ([^\]\n]*)\]/g

/** Sessions looked at for earlier posts, the most recently updated first. */
const SESSIONS_LOOKED_AT = 20

/**
 * Test fault point (e2e/opencode.py): `skip_ack` posts and never
 * acknowledges, as if OpenCode died between the two.
 */
const FAULT = process.env.BGTASK_OPENCODE_FAULT ?? ""

/** serve's frames that announce a notification. */
const NOTICE_FRAMES = new Set(["bash_completed", "bash_ready", "bash_ready_failed", "bash_watch_match"])

const LIVE = new Set(["queued", "starting", "running", "killing"])

/** Whether a task may hold a turn (bgtask-core's `holds_turn`). */
function holdsTurn(t: Json): boolean {
  return LIVE.has(t.status) && t.notify === true && (!t.readiness || t.readiness.outcome === null || t.readiness.outcome === undefined)
}

export const BgtaskPlugin: Plugin = async ({ client, directory }) => {
  const session = process.env.BGTASK_SESSION || sessionOfDir(directory)
  // Under `opencode run` the process ends when the session goes idle.
  // (argv: the runtime, the script, then OpenCode's own arguments.)
  const runMode = process.argv.slice(2).find((a) => !a.startsWith("-")) === "run"
  log("start", { session, directory, runMode, argv: process.argv })

  /** OpenCode's sessions: status by id; children (subagents) are skipped. */
  const status = new Map<string, string>()
  const children = new Set<string>()
  /** The session notifications go to: the last top-level one that was busy. */
  let target: string | undefined
  /** Delivered (stored by OpenCode) but not yet acknowledged. */
  const unacked = new Set<string>()
  let delivering = false
  let again = false
  let retry = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  /** Posted messages waiting to be seen stored, by session and text. */
  const awaiting = new Map<string, () => void>()

  const serve = new Serve(session, directory, (method) => {
    if (method === "ready" || NOTICE_FRAMES.has(method)) {
      log("frame", method)
      if (target && status.get(target) === "idle") void flush()
    }
  })
  serve.start()

  /**
   * The session's notifications (every kind) not yet delivered, oldest
   * first. One a bgtask tool result showed is claimed by the MCP server
   * (completions and the other kinds alike, docs/protocol.md "Claims")
   * and not listed here, so the model is not told twice.
   */
  async function pending(): Promise<Json[]> {
    const r = await serve.call("bash_drain_completions", { all_kinds: true })
    return (r?.notifications ?? []).filter((n: Json) => !unacked.has(n.notification_id))
  }

  async function acknowledge(ids: string[]) {
    if (FAULT === "skip_ack") {
      log("fault skip_ack: not acknowledged", ids)
      return
    }
    ids.forEach((id) => unacked.add(id))
    try {
      await ack(session, [...unacked])
      unacked.clear()
    } catch (e) {
      // Kept in `unacked` (never shown again by this process) and retried
      // with the next acknowledgement.
      log("ack failed", String(e))
    }
  }

  /**
   * The keys of notifications already in a stored message: of `sessionID`
   * and of the project's other top-level sessions updated since `since`
   * (unix ms), the most recent first. Empty when OpenCode cannot say: then
   * a notification is posted (told twice at worst, never lost).
   */
  async function postedKeys(sessionID: string, since: number): Promise<Set<string>> {
    const keys = new Set<string>()
    const ids = [sessionID]
    try {
      const listed: Json = await (client as Json).session.list()
      const recent = ((listed?.data ?? []) as Json[])
        .filter((x) => !x.parentID && x.id !== sessionID && (x.time?.updated ?? 0) >= since)
        .sort((a, b) => (b.time?.updated ?? 0) - (a.time?.updated ?? 0))
      ids.push(...recent.slice(0, SESSIONS_LOOKED_AT - 1).map((x) => x.id))
    } catch (e) {
      log("session list failed", String(e))
    }
    for (const id of ids) {
      try {
        const res: Json = await (client as Json).session.messages({ path: { id } })
        for (const m of res?.data ?? []) {
          if (m?.info?.role !== "user") continue
          for (const part of m.parts ?? []) {
            if (part?.type !== "text") continue
            for (const found of String(part.text ?? "").matchAll(KEYS_LINE)) {
              found[1].split(/\s+/).filter(Boolean).forEach((k) => keys.add(k))
            }
          }
        }
      } catch (e) {
        log("message list failed", id, String(e))
      }
    }
    return keys
  }

  /**
   * Acknowledges those of `notes` a stored message already carries and
   * returns the others, the ones still to post into `sessionID`.
   */
  async function notPosted(sessionID: string, notes: Json[]): Promise<Json[]> {
    if (!notes.length) return notes
    const since = Math.min(...notes.map((n) => Number(n.created_at) || 0)) - 60_000
    const posted = await postedKeys(sessionID, since)
    const told = notes.filter((n) => posted.has(keyOf(n)))
    if (!told.length) return notes
    log("already posted, acknowledged only", told.map((n) => n.notification_id))
    await acknowledge(told.map((n) => n.notification_id))
    return notes.filter((n) => !posted.has(keyOf(n)))
  }

  /** Posts `notes` into `sessionID`; true once OpenCode has taken it. */
  async function post(sessionID: string, notes: Json[]): Promise<boolean> {
    const text = messageText(notes)
    // promptAsync answers before the message is stored: wait for its
    // part to appear (so a held turn sees it, and the acknowledgement
    // follows the storing).
    let seen!: () => void
    const stored = new Promise<void>((resolve) => (seen = resolve))
    const key = `${sessionID}\n${text}`
    awaiting.set(key, seen)
    try {
      const res: Json = await (client as Json).session.promptAsync({
        path: { id: sessionID },
        body: { parts: [{ type: "text", text }] },
      })
      const ok = !res?.error && (res?.response?.ok ?? true)
      log("promptAsync", { sessionID, ok, status: res?.response?.status, error: res?.error })
      if (!ok) return false
      const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STORED_WAIT_MS))
      if (!(await Promise.race([stored.then(() => true), timer]))) {
        // Accepted (204) but not seen: counted as delivered all the same.
        log("message not seen stored in time", sessionID)
      }
      return true
    } finally {
      awaiting.delete(key)
    }
  }

  /**
   * Delivers what is pending to the target session while it is idle.
   * Not under `opencode run`: there an idle session is about to end, and
   * its turn's end is where `hold` delivers.
   */
  async function flush() {
    if (runMode) return
    if (delivering) {
      again = true
      return
    }
    delivering = true
    try {
      do {
        again = false
        const to = target
        if (!to || status.get(to) !== "idle") return
        const notes = fitting(await notPosted(to, await pending()))
        if (!notes.length) return
        if (await post(to, notes)) {
          retry = 0
          await acknowledge(notes.map((n) => n.notification_id))
          again = true
        } else {
          scheduleRetry()
          return
        }
      } while (again)
    } catch (e) {
      log("delivery failed", String(e))
      scheduleRetry()
    } finally {
      delivering = false
    }
  }

  function scheduleRetry() {
    clearTimeout(retryTimer)
    const delay = RETRY_MS[Math.min(retry++, RETRY_MS.length - 1)]
    retryTimer = setTimeout(() => void flush(), delay)
  }

  /**
   * `opencode run`: the turn of `sessionID` is about to end. While tasks
   * that notify run, wait for the next notification and add it to the
   * turn (the session loop then continues with it instead of ending).
   */
  async function hold(sessionID: string) {
    const limit = holdLimitMs()
    if (!limit) return
    const deadline = Date.now() + limit
    for (;;) {
      // The tasks that hold first, the notifications second: a task that
      // ends between the two reads is then either still listed (its wait
      // below returns at once) or its notification is read (a task's end,
      // or its readiness outcome, and its notification are one
      // transaction). In the other order a task ending between them was
      // neither, and the turn ended untold.
      const listed = await serve.call("bash_list", {})
      const holders: Json[] = (listed?.tasks ?? []).filter(holdsTurn)
      const notes = fitting(await notPosted(sessionID, await pending()))
      if (notes.length) {
        const ok = await post(sessionID, notes)
        log("held turn posted", { ok, ids: notes.map((n) => n.notification_id) })
        if (ok) await acknowledge(notes.map((n) => n.notification_id))
        return
      }
      const left = deadline - Date.now()
      log("holding", { sessionID, holders: holders.map((t) => t.task_id), left })
      if (!holders.length || left <= 0) return
      // Until one of them ends (or, with a readiness condition, is
      // decided): one wait per task, the first answer wins.
      const timeout_ms = Math.min(left, 60_000)
      await Promise.race(
        holders.map((t) =>
          serve.call("bash_wait", { task_ids: [t.task_id], until: t.readiness ? "ready" : "end", timeout_ms }),
        ),
      )
    }
  }

  /** Whether the assistant message already has a tool call. */
  async function callsTool(sessionID: string, messageID: string): Promise<boolean> {
    try {
      const res: Json = await (client as Json).session.message({ path: { id: sessionID, messageID } })
      return (res?.data?.parts ?? []).some((p: Json) => p.type === "tool")
    } catch (e) {
      log("message read failed", String(e))
      return false
    }
  }

  return {
    event: async ({ event }: { event: Json }) => {
      const p = event.properties ?? {}
      if (event.type === "session.status" || event.type === "session.idle") log("event", event.type, JSON.stringify(p))
      switch (event.type) {
        case "message.part.updated": {
          const part = p.part ?? {}
          if (part.type === "text") awaiting.get(`${part.sessionID}\n${part.text}`)?.()
          break
        }
        case "session.created":
        case "session.updated":
          if (p.info?.parentID) children.add(p.info.id)
          break
        case "session.status":
          if (children.has(p.sessionID)) break
          status.set(p.sessionID, p.status?.type)
          if (p.status?.type === "busy") target = p.sessionID
          if (p.status?.type === "idle" && p.sessionID === target) void flush()
          break
        case "session.idle":
          if (children.has(p.sessionID)) break
          status.set(p.sessionID, "idle")
          if (!target) target = p.sessionID
          if (p.sessionID === target) void flush()
          break
        case "server.instance.disposed":
          serve.close()
          break
      }
    },
    "experimental.text.complete": async (input: Json) => {
      log("text complete", input)
      if (!runMode || children.has(input.sessionID)) return
      try {
        // A step that also calls a tool goes on by itself: only a step
        // of text alone ends the turn. (Providers that stream the tool
        // call after the text end it after this hook: such a step is
        // held too, until the next notification or the limit.)
        if (await callsTool(input.sessionID, input.messageID)) {
          log("not held: the step calls a tool")
          return
        }
        await hold(input.sessionID)
      } catch (e) {
        log("hold failed", String(e))
      }
    },
  } as Json
}
