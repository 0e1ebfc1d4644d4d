//! `bgtask setup AGENT`: writes (or, with `--remove`, removes) what an
//! agent's harness needs to use bgtask: its MCP server entry for `bgtask
//! mcp` and its hooks (`bgtask hook AGENT`), merged into the existing
//! config files without disturbing other entries (JSON rewritten with its
//! other keys kept, TOML edited in place with its formatting and comments).
//! Idempotent; prints each file it changed (`--dry-run`: would change).
//!
//! No store path is written: `BGTASK_HOME` and `BGTASK_SESSION` reach the
//! MCP server and the hooks from the agent's environment (Codex passes an
//! MCP server only the variables its entry lists: `env_vars`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::hook::Agent;

/// The harnesses `bgtask setup` knows: those of `bgtask hook`, and
/// OpenCode, which gets a plugin instead of hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SetupAgent {
    /// Claude Code
    ClaudeCode,
    /// OpenAI Codex CLI
    Codex,
    /// Google Gemini CLI
    Gemini,
    /// OpenCode (opencode.json and the plugin in .opencode/plugin/)
    Opencode,
}

impl SetupAgent {
    fn name(self) -> &'static str {
        match self {
            SetupAgent::ClaudeCode => Agent::ClaudeCode.name(),
            SetupAgent::Codex => Agent::Codex.name(),
            SetupAgent::Gemini => Agent::Gemini.name(),
            SetupAgent::Opencode => "opencode",
        }
    }
}

/// The OpenCode plugin, installed as `bgtask.ts` in OpenCode's plugin
/// directory with the line [`PLUGIN_COMMAND_LINE`] naming this bgtask.
const OPENCODE_PLUGIN: &str = include_str!("../../../integrations/opencode/bgtask.ts");
/// The plugin's line that names the bgtask executable.
const PLUGIN_COMMAND_LINE: &str = "const BGTASK_COMMAND = \"bgtask\"";
/// How a plugin file setup wrote begins (any version of it).
const PLUGIN_HEADER: &str = "// bgtask for OpenCode:";

/// `bgtask setup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The agent to set up
    #[arg(value_enum)]
    pub agent: SetupAgent,
    /// Where: this project's config files, or the user's
    #[arg(long, value_enum, default_value = "project")]
    pub scope: Scope,
    /// Print what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove bgtask's entries instead
    #[arg(long)]
    pub remove: bool,
    /// Confine the agent's tasks (docs/sandbox.md): the agent's calls may
    /// narrow this, never widen it. Codex: taken from its own
    /// `sandbox_mode` when not given
    #[arg(long, value_name = "MODE", value_parser = ["none", "workspace", "read-only"])]
    pub sandbox: Option<String>,
    /// With --sandbox: the agent's tasks have no network
    #[arg(long, requires = "sandbox")]
    pub no_network: bool,
}

/// The sandbox of the agent's tasks, set through its MCP server entry's
/// environment (`BGTASK_AGENT_SANDBOX`, `BGTASK_AGENT_NO_NETWORK`).
#[derive(Debug, Default, PartialEq, Eq)]
struct AgentSandbox {
    mode: Option<String>,
    no_network: bool,
    /// Where the choice came from, for the output.
    why: String,
}

impl AgentSandbox {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(mode) = self.mode.as_ref().filter(|m| *m != "none") {
            env.push(("BGTASK_AGENT_SANDBOX", mode.clone()));
            if self.no_network {
                env.push(("BGTASK_AGENT_NO_NETWORK", "1".to_owned()));
            }
        }
        env
    }
}

/// The agent's sandbox: the flags, else (Codex) its own `sandbox_mode`
/// mapped to bgtask's (docs/sandbox.md, "Agents"), else none.
fn agent_sandbox(args: &SetupArgs, project: &Path) -> Result<AgentSandbox> {
    if let Some(mode) = &args.sandbox {
        return Ok(AgentSandbox {
            mode: Some(mode.clone()),
            no_network: args.no_network,
            why: "--sandbox".into(),
        });
    }
    if args.agent != SetupAgent::Codex {
        return Ok(AgentSandbox::default());
    }
    // The project's file wins over the user's, as in Codex.
    let user = match std::env::var_os("CODEX_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home_dir()?.join(".codex"),
    };
    for file in [project.join(".codex/config.toml"), user.join("config.toml")] {
        let Some(text) = read(&file)? else { continue };
        let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
            continue;
        };
        let Some(mode) = doc.get("sandbox_mode").and_then(|v| v.as_str()) else {
            continue;
        };
        let network = doc
            .get("sandbox_workspace_write")
            .and_then(|t| t.get("network_access"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let (mode, no_network) = match mode {
            "read-only" => ("read-only", true),
            "workspace-write" => ("workspace", !network),
            _ => ("none", false),
        };
        return Ok(AgentSandbox {
            mode: Some(mode.to_owned()),
            no_network,
            why: format!("Codex's sandbox_mode in {}", file.display()),
        });
    }
    Ok(AgentSandbox::default())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    Project,
    User,
}

/// Environment variables the MCP server must see to share the CLI's store.
const PASSED_ENV: [&str; 2] = ["BGTASK_HOME", "BGTASK_SESSION"];
/// Seconds Claude Code lets the Stop hook run: it waits, in the background
/// (asyncRewake), for the next notification; under `claude -p` it holds
/// the run and bounds itself (10 minutes by default).
const CLAUDE_STOP_TIMEOUT_S: u64 = 12 * 3600;
/// Seconds Codex lets the Stop hook run (the gate bounds itself at 10 min).
const CODEX_STOP_TIMEOUT_S: u64 = 660;
/// Milliseconds Gemini CLI lets AfterAgent run.
const GEMINI_STOP_TIMEOUT_MS: u64 = 660_000;

/// One file's new text, or `None` when it is to be removed.
struct Change {
    path: PathBuf,
    before: Option<String>,
    after: Option<String>,
    what: String,
}

pub fn run(args: &SetupArgs) -> Result<u8> {
    let bgtask = bgtask_command()?;
    let changes = plan(args, &bgtask)?;
    let mut out = String::new();
    let verb = if args.dry_run {
        "would update"
    } else {
        "updated"
    };
    let mut changed = 0;
    for change in &changes {
        if change.before == change.after {
            continue;
        }
        changed += 1;
        if !args.dry_run {
            write(change)?;
        }
        let verb = match (&change.after, args.dry_run) {
            (None, true) => "would remove",
            (None, false) => "removed",
            (Some(_), _) if change.before.is_none() => {
                if args.dry_run {
                    "would create"
                } else {
                    "created"
                }
            }
            _ => verb,
        };
        out.push_str(&format!(
            "{verb} {}: {}\n",
            change.path.display(),
            change.what
        ));
    }
    if changed == 0 {
        out.push_str(&format!(
            "{} is already {} for {}; nothing to change\n",
            args.agent.name(),
            if args.remove {
                "without bgtask"
            } else {
                "set up"
            },
            match args.scope {
                Scope::Project => "this project",
                Scope::User => "this user",
            }
        ));
    }
    if !args.remove && !args.dry_run {
        out.push_str(still_needed(args.agent, args.scope));
    }
    if !args.remove && args.sandbox.is_none() && args.agent == SetupAgent::ClaudeCode {
        out.push_str(
            "tip: `bgtask setup claude-code --sandbox workspace` confines the agent's bgtask \
             tasks to this project (writes only here, credentials unreadable), as Claude Code's \
             own sandbox does for its Bash tool (docs/sandbox.md)\n",
        );
    }
    print!("{out}");
    Ok(0)
}

/// What a person must still do.
fn still_needed(agent: SetupAgent, scope: Scope) -> &'static str {
    match (agent, scope) {
        (SetupAgent::ClaudeCode, Scope::Project) => {
            "Still needed: interactive Claude Code asks once to approve the project's MCP servers (.mcp.json); `claude -p` does not.\n"
        }
        (SetupAgent::Codex, _) => {
            "Still needed: Codex runs hooks only once trusted (review them with /hooks in Codex, or run with --dangerously-bypass-hook-trust).\n"
        }
        (SetupAgent::Gemini, Scope::Project) => {
            "Still needed: Gemini CLI reads a project's settings only in a trusted folder.\n"
        }
        (SetupAgent::Opencode, _) => {
            "OpenCode loads the plugin at its next start: restart running OpenCode sessions.\n"
        }
        _ => "",
    }
}

/// How config files name bgtask: `bgtask` when that is this executable on
/// the PATH, else this executable's absolute path.
fn bgtask_command() -> Result<String> {
    let me = std::env::current_exe().context("cannot locate the bgtask executable")?;
    let me = std::fs::canonicalize(&me).unwrap_or(me);
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("bgtask"))
            .find(|p| p.is_file())
    });
    if on_path
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| p == me)
    {
        return Ok("bgtask".to_owned());
    }
    me.to_str()
        .map(str::to_owned)
        .context("the bgtask executable's path is not UTF-8")
}

fn home_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => bail!("HOME is not set"),
    }
}

fn plan(args: &SetupArgs, bgtask: &str) -> Result<Vec<Change>> {
    let project = std::env::current_dir().context("cannot read the current directory")?;
    let hook = format!("{bgtask} hook {}", args.agent.name());
    let add = !args.remove;
    let sandbox = agent_sandbox(args, &project)?;
    let env = sandbox.env();
    let env_json = (!env.is_empty()).then(|| {
        Value::Object(
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect(),
        )
    });
    Ok(match args.agent {
        SetupAgent::ClaudeCode => {
            let (mcp_file, settings) = match args.scope {
                Scope::Project => (
                    project.join(".mcp.json"),
                    project.join(".claude/settings.json"),
                ),
                Scope::User => {
                    let home = home_dir()?;
                    (
                        home.join(".claude.json"),
                        home.join(".claude/settings.json"),
                    )
                }
            };
            let stop = json!({
                "type": "command", "command": hook, "asyncRewake": true,
                "timeout": CLAUDE_STOP_TIMEOUT_S,
            });
            let plain = json!({ "type": "command", "command": hook });
            vec![
                json_change(&mcp_file, &server_what(&sandbox), |doc| {
                    set_mcp_server(doc, bgtask, add, env_json.clone())
                })?,
                json_change(
                    &settings,
                    "hooks SessionStart, UserPromptSubmit, PostToolUse, Stop (asyncRewake)",
                    |doc| set_hooks(doc, &hook, add, &session_prompt_tool_stop(&plain, &stop)),
                )?,
            ]
        }
        SetupAgent::Codex => {
            let dir = match args.scope {
                Scope::Project => project.join(".codex"),
                Scope::User => match std::env::var_os("CODEX_HOME") {
                    Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                    _ => home_dir()?.join(".codex"),
                },
            };
            let stop =
                json!({ "type": "command", "command": hook, "timeout": CODEX_STOP_TIMEOUT_S });
            let plain = json!({ "type": "command", "command": hook });
            vec![
                toml_change(&dir.join("config.toml"), bgtask, add, &sandbox)?,
                json_change(
                    &dir.join("hooks.json"),
                    "hooks SessionStart, UserPromptSubmit, PostToolUse, Stop",
                    |doc| set_hooks(doc, &hook, add, &session_prompt_tool_stop(&plain, &stop)),
                )?,
            ]
        }
        SetupAgent::Opencode => {
            let dir = match args.scope {
                Scope::Project => project.clone(),
                Scope::User => opencode_config_dir()?,
            };
            let config = opencode_config_file(&dir)?;
            // The plugin directory sits beside the project's config in
            // `.opencode/`, in the user's config directory itself.
            let plugins = match args.scope {
                Scope::Project => dir.join(".opencode/plugin"),
                Scope::User => dir.join("plugin"),
            };
            vec![
                json_change_owning(
                    &config,
                    &server_what(&sandbox),
                    &["mcp", "$schema"],
                    |doc| set_opencode_server(doc, bgtask, add, env_json.clone()),
                )?,
                plugin_change(&plugins.join("bgtask.ts"), bgtask, add)?,
            ]
        }
        SetupAgent::Gemini => {
            let settings = match args.scope {
                Scope::Project => project.join(".gemini/settings.json"),
                Scope::User => home_dir()?.join(".gemini/settings.json"),
            };
            let stop =
                json!({ "type": "command", "command": hook, "timeout": GEMINI_STOP_TIMEOUT_MS });
            let plain = json!({ "type": "command", "command": hook });
            vec![json_change(
                &settings,
                &format!(
                    "{}; hooks SessionStart, BeforeAgent, AfterTool, AfterAgent",
                    server_what(&sandbox)
                ),
                |doc| {
                    set_mcp_server(doc, bgtask, add, env_json.clone());
                    set_hooks(
                        doc,
                        &hook,
                        add,
                        &[
                            ("SessionStart", &plain),
                            ("BeforeAgent", &plain),
                            ("AfterTool", &plain),
                            ("AfterAgent", &stop),
                        ],
                    );
                },
            )?]
        }
    })
}

/// Reads a JSON config file (absent: `{}`), edits it, and returns the
/// change. A file that is not a JSON object is refused, never replaced.
fn json_change(
    path: &Path,
    what: &str,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Result<Change> {
    json_change_owning(path, what, &["mcpServers", "hooks"], edit)
}

/// [`json_change`] for a file whose keys `ours` are all setup writes: a
/// file that held nothing else is removed by `--remove`.
fn json_change_owning(
    path: &Path,
    what: &str,
    ours: &[&str],
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Result<Change> {
    let before = read(path)?;
    let mut doc: Map<String, Value> = match &before {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
            .with_context(|| format!("{} is not a JSON object; left unchanged", path.display()))?,
        _ => Map::new(),
    };
    let original = doc.clone();
    edit(&mut doc);
    let after = if doc == original {
        before.clone()
    } else if before.is_some()
        && doc.keys().all(|k| ours.contains(&k.as_str()))
        && !doc.keys().any(|k| k != "$schema")
        && original.keys().all(|k| ours.contains(&k.as_str()))
    {
        None
    } else {
        Some(serde_json::to_string_pretty(&Value::Object(doc))? + "\n")
    };
    Ok(Change {
        path: path.to_owned(),
        before,
        after,
        what: what.to_owned(),
    })
}

/// Adds (or removes) `mcpServers.bgtask`.
fn set_mcp_server(doc: &mut Map<String, Value>, bgtask: &str, add: bool, env: Option<Value>) {
    let servers = doc.entry("mcpServers").or_insert_with(|| json!({}));
    let Some(servers) = servers.as_object_mut() else {
        return;
    };
    if add {
        let mut entry = json!({ "command": bgtask, "args": ["mcp"] });
        if let Some(env) = env {
            entry["env"] = env;
        }
        servers.insert("bgtask".into(), entry);
    } else {
        servers.remove("bgtask");
        if servers.is_empty() {
            doc.remove("mcpServers");
        }
    }
}

/// The user's OpenCode config directory: `$XDG_CONFIG_HOME/opencode`,
/// else `~/.config/opencode`.
fn opencode_config_dir() -> Result<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir).join("opencode")),
        _ => Ok(home_dir()?.join(".config/opencode")),
    }
}

/// OpenCode's config file in `dir`: `opencode.json`, or an existing
/// `opencode.jsonc` when there is no `opencode.json` (edited only if it
/// is plain JSON: its comments could not be kept).
fn opencode_config_file(dir: &Path) -> Result<PathBuf> {
    let json = dir.join("opencode.json");
    let jsonc = dir.join("opencode.jsonc");
    if json.exists() || !jsonc.exists() {
        return Ok(json);
    }
    let text = read(&jsonc)?.unwrap_or_default();
    if serde_json::from_str::<Map<String, Value>>(&text).is_err() {
        bail!(
            "{} has comments bgtask cannot keep; add `mcp.bgtask` by hand (docs/agents.md, OpenCode)",
            jsonc.display()
        );
    }
    Ok(jsonc)
}

/// Adds (or removes) OpenCode's `mcp.bgtask`; a new file gets `$schema`.
fn set_opencode_server(doc: &mut Map<String, Value>, bgtask: &str, add: bool, env: Option<Value>) {
    if add && doc.is_empty() {
        doc.insert("$schema".into(), json!("https://opencode.ai/config.json"));
    }
    let servers = doc.entry("mcp").or_insert_with(|| json!({}));
    let Some(servers) = servers.as_object_mut() else {
        return;
    };
    if add {
        let mut entry = json!({ "type": "local", "command": [bgtask, "mcp"], "enabled": true });
        if let Some(env) = env {
            entry["environment"] = env;
        }
        servers.insert("bgtask".into(), entry);
    } else {
        servers.remove("bgtask");
        if servers.is_empty() {
            doc.remove("mcp");
        }
    }
}

/// The plugin file: the repo's plugin naming `bgtask`; or its removal.
/// A file there that setup did not write is refused, never replaced.
fn plugin_change(path: &Path, bgtask: &str, add: bool) -> Result<Change> {
    let before = read(path)?;
    let ours = before
        .as_deref()
        .is_none_or(|text| text.starts_with(PLUGIN_HEADER));
    if !ours && add {
        bail!(
            "{} is not bgtask's plugin; left unchanged (move it away to install bgtask's)",
            path.display()
        );
    }
    let line = format!(
        "const BGTASK_COMMAND = {}",
        Value::String(bgtask.to_owned())
    );
    let after = match (add, ours) {
        (true, _) => Some(OPENCODE_PLUGIN.replacen(PLUGIN_COMMAND_LINE, &line, 1)),
        (false, true) => None,
        (false, false) => before.clone(),
    };
    Ok(Change {
        path: path.to_owned(),
        before,
        after,
        what: "the bgtask plugin (runs `bgtask serve`, delivers notifications)".to_owned(),
    })
}

/// Whether a hook handler is one setup wrote.
fn is_ours(handler: &Value, hook: &str) -> bool {
    handler["command"].as_str().is_some_and(|c| c == hook)
}

/// Puts one handler per event under `hooks`, replacing any of ours and
/// leaving every other handler alone; or removes ours.
fn set_hooks(doc: &mut Map<String, Value>, hook: &str, add: bool, events: &[(&str, &Value)]) {
    let hooks = doc.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else {
        return;
    };
    for (event, handler) in events {
        let groups = hooks.entry(*event).or_insert_with(|| json!([]));
        let Some(list) = groups.as_array_mut() else {
            continue;
        };
        // Drop our handlers (and groups left empty by that).
        for group in list.iter_mut() {
            if let Some(handlers) = group["hooks"].as_array_mut() {
                handlers.retain(|h| !is_ours(h, hook));
            }
        }
        list.retain(|g| g["hooks"].as_array().is_none_or(|h| !h.is_empty()));
        if add {
            list.push(json!({ "hooks": [handler] }));
        }
        if list.is_empty() {
            hooks.remove(*event);
        }
    }
    if hooks.is_empty() {
        doc.remove("hooks");
    }
}

/// What the MCP server entry says, for the output.
fn server_what(sandbox: &AgentSandbox) -> String {
    match &sandbox.mode {
        Some(mode) if mode != "none" => format!(
            "MCP server bgtask (agent tasks sandboxed: {mode}{}, from {})",
            if sandbox.no_network {
                ", no network"
            } else {
                ""
            },
            sandbox.why
        ),
        _ => "MCP server bgtask".to_owned(),
    }
}

/// Codex's `config.toml`: `[mcp_servers.bgtask]`, edited in place.
fn toml_change(path: &Path, bgtask: &str, add: bool, sandbox: &AgentSandbox) -> Result<Change> {
    use toml_edit::{value, Array, DocumentMut, Item, Table};
    let before = read(path)?;
    let mut doc: DocumentMut = before
        .as_deref()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("{} is not valid TOML; left unchanged", path.display()))?;
    if add {
        let servers = doc
            .entry("mcp_servers")
            .or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            })
            .as_table_mut()
            .with_context(|| format!("{}: mcp_servers is not a table", path.display()))?;
        let mut entry = Table::new();
        entry.insert("command", value(bgtask));
        let mut args = Array::new();
        args.push("mcp");
        entry.insert("args", value(args));
        let mut env = Array::new();
        for name in PASSED_ENV {
            env.push(name);
        }
        // Codex gives an MCP server only the variables listed here.
        entry.insert("env_vars", value(env));
        let fixed = sandbox.env();
        if !fixed.is_empty() {
            let mut table = toml_edit::InlineTable::new();
            for (key, val) in fixed {
                table.insert(key, val.into());
            }
            entry.insert("env", value(table));
        }
        let same = servers
            .get("bgtask")
            .and_then(Item::as_table)
            .is_some_and(|t| t.to_string() == entry.to_string());
        if !same {
            servers.insert("bgtask", Item::Table(entry));
        }
    } else if let Some(servers) = doc.get_mut("mcp_servers").and_then(Item::as_table_mut) {
        servers.remove("bgtask");
        if servers.is_empty() {
            doc.remove("mcp_servers");
        }
    }
    let text = doc.to_string();
    let after = if Some(&text) == before.as_ref() {
        before.clone()
    } else if text.trim().is_empty() && before.is_some() {
        None
    } else if text.trim().is_empty() {
        before.clone()
    } else {
        Some(text)
    };
    Ok(Change {
        path: path.to_owned(),
        before,
        after,
        what: format!(
            "{} (passing BGTASK_HOME, BGTASK_SESSION)",
            server_what(sandbox)
        ),
    })
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a change: through a temporary file and a rename, so a reader
/// never sees half a config.
fn write(change: &Change) -> Result<()> {
    let path = &change.path;
    match &change.after {
        None => {
            std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
        }
        Some(text) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let tmp = path.with_extension("bgtask-setup.tmp");
            std::fs::write(&tmp, text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            // Keep the file's mode (a user config may be private).
            if let Ok(meta) = std::fs::metadata(path) {
                let _ = std::fs::set_permissions(&tmp, meta.permissions());
            }
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
        }
    }
}

/// The events Claude Code and Codex both hook, in the same shape: the
/// inject hook on the session's start, each prompt and each tool result,
/// and `stop` (each harness's own Stop hook) on Stop.
fn session_prompt_tool_stop<'a>(
    plain: &'a Value,
    stop: &'a Value,
) -> [(&'static str, &'a Value); 4] {
    [
        ("SessionStart", plain),
        ("UserPromptSubmit", plain),
        ("PostToolUse", plain),
        ("Stop", stop),
    ]
}
