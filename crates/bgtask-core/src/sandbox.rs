//! Sandboxed tasks: what a task may read, write and reach, decided once by
//! the starter and enforced by the task's monitor in the shell's child
//! between clone and exec (`process::prepare_confinement`), so it holds
//! whoever started the task and for every process the task starts.
//!
//! Modes: `none` (no confinement), `workspace` (read everything except the
//! denied paths, write the working directory tree, the task's private
//! temporary directory and a few devices), `read-only` (write only the
//! private temporary directory and the devices). `--no-network` puts the
//! task in a network namespace of its own (loopback only).
//!
//! Filesystem confinement is Landlock, an allow-list: "everything except
//! the denied paths" is built by granting each entry of a directory that
//! is an ancestor of a denied path and descending only along those
//! ancestors (see `process/linux/sandbox.rs`). It fails closed: a kernel
//! that cannot enforce the mode fully refuses the task, unless the person
//! starting it passes `--sandbox-fallback none` (recorded on the task).
//!
//! People choose freely on the command line; agents (serve, MCP, hooks)
//! start from the configured agent default and may only narrow it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process;

/// The oldest Landlock ABI that enforces every write a mode denies: ABI 3
/// added truncation, which ABI 1 and 2 cannot deny.
pub const MIN_LANDLOCK_ABI: u32 = 3;

/// Credential paths no sandboxed task may read, under the user's home
/// (`~/`). The config's `sandbox.deny` adds to it; bgtask's own home is
/// always added.
pub const DENIED_UNDER_HOME: &[&str] = &[
    ".ssh",
    ".aws",
    ".config/gcloud",
    ".azure",
    ".kube",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".gnupg",
    ".password-store",
    ".config/gh/hosts.yml",
    ".config/hub",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".local/share/keyrings",
    // The agents' own credentials.
    ".codex/auth.json",
    ".claude/.credentials.json",
    ".config/claude",
    ".gemini/oauth_creds.json",
    ".config/github-copilot",
    // Browser profiles: session cookies are credentials too.
    ".mozilla",
    ".config/google-chrome",
    ".config/chromium",
];

/// Variables an agent's `env` may not set: they change what runs (the
/// dynamic loader, the shell's start-up files, the search path) rather
/// than configure the command.
pub const AGENT_FORBIDDEN_ENV: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "PATH",
];

/// How confined a task is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    None,
    Workspace,
    ReadOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Workspace => "workspace",
            Mode::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Mode::None),
            "workspace" => Ok(Mode::Workspace),
            "read-only" | "readonly" => Ok(Mode::ReadOnly),
            _ => Err(Error::InvalidArgument(format!(
                "unknown sandbox mode {s:?} (expected none, workspace or read-only)"
            ))),
        }
    }
}

/// The sandbox defaults of one kind of starter (from `settings.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Agents' tasks: a request may only narrow these defaults.
    pub agent: bool,
    pub mode: Mode,
    pub no_network: bool,
    /// Writable besides the workspace, for every sandboxed task.
    pub allow_write: Vec<PathBuf>,
    /// Denied besides [`DENIED_UNDER_HOME`] and bgtask's home.
    pub deny: Vec<PathBuf>,
    /// Refuse sandboxed tasks unless the kernel's Landlock ABI is at least
    /// this (never below [`MIN_LANDLOCK_ABI`]); a test raises it to prove
    /// that an older kernel is refused.
    pub require_abi: u32,
    /// `no_network` by a seccomp filter even where network namespaces
    /// work (where they do not, the filter is used anyway).
    pub network_filter: bool,
}

/// What a start asks for; unset fields take the configured defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxRequest {
    pub mode: Option<Mode>,
    pub no_network: Option<bool>,
    pub allow_write: Vec<PathBuf>,
    pub allow_read: Vec<PathBuf>,
    /// `--sandbox-fallback none`: run unconfined if the kernel cannot
    /// confine (people only).
    pub fallback_none: bool,
    /// The tree `workspace` may write; the task's working directory when
    /// unset. Agents' servers set their own workspace, so an agent cannot
    /// widen it by naming another `cwd`.
    pub workspace: Option<PathBuf>,
}

/// The effective confinement, as the task object records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub mode: Mode,
    pub no_network: bool,
    /// Writable trees besides the private temporary directory.
    #[serde(serialize_with = "serialize_paths")]
    pub allow_write: Vec<PathBuf>,
    /// What enforces it (`landlock`, `network-namespace`), or `none (…)`
    /// when the task runs unconfined by `--sandbox-fallback none`.
    pub enforced_by: String,
}

/// What the monitor enforces: given on its command line as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `None` with `no_network`: a network namespace and no Landlock.
    pub mode: Mode,
    pub no_network: bool,
    /// Writable trees (the private temporary directory comes on top).
    pub write: Vec<PathBuf>,
    /// Readable although beneath a denied path (`--allow-read`).
    pub read: Vec<PathBuf>,
    /// Never readable nor writable.
    pub deny: Vec<PathBuf>,
    /// `no_network` by the seccomp filter, not a network namespace.
    #[serde(default)]
    pub network_filter: bool,
}

impl Policy {
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_arg(text: &str) -> Result<Policy> {
        serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("invalid sandbox policy: {e}")))
    }

    /// The system calls' view of it: what `process` confines the shell to,
    /// `tmp` being the task's private temporary directory.
    pub fn confinement<'a>(&'a self, tmp: Option<&'a Path>) -> process::ConfineSpec<'a> {
        process::ConfineSpec {
            landlock: self.mode != Mode::None,
            write: &self.write,
            read: &self.read,
            deny: &self.deny,
            tmp,
            no_network: self.no_network,
            network_filter: self.network_filter,
        }
    }
}

/// A start's resolved sandbox: what to record on the task, and what the
/// monitor enforces (`None` when nothing is: no sandbox asked, or the
/// fallback ran it unconfined).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub record: Option<Sandbox>,
    pub policy: Option<Policy>,
}

/// Decides a start's sandbox from the starter's defaults and the request,
/// and checks that this kernel can enforce it (failing closed).
/// `home` is bgtask's home (always denied), `cwd` the task's directory.
pub fn resolve(
    config: &SandboxConfig,
    req: &SandboxRequest,
    cwd: &Path,
    home: &Path,
) -> Result<Resolved> {
    let mode = match req.mode {
        Some(asked) if config.agent && asked < config.mode => {
            return Err(widening(format!(
                "sandbox {asked:?} is wider than the configured agent sandbox {:?}",
                config.mode.as_str()
            )));
        }
        Some(asked) if config.agent => asked.max(config.mode),
        Some(asked) => asked,
        None => config.mode,
    };
    let no_network = match req.no_network {
        Some(false) if config.agent && config.no_network => {
            return Err(widening(
                "no_network false would open the network the configured agent sandbox closes"
                    .into(),
            ));
        }
        Some(asked) if config.agent => asked || config.no_network,
        Some(asked) => asked,
        None => config.no_network,
    };
    if mode == Mode::None && !no_network {
        if !req.allow_write.is_empty() || !req.allow_read.is_empty() {
            return Err(Error::InvalidArgument(
                "allow_write and allow_read need a sandbox mode (workspace or read-only)".into(),
            ));
        }
        return Ok(Resolved::default());
    }
    let workspace = req.workspace.as_deref().unwrap_or(cwd);
    let mut write = Vec::new();
    if mode == Mode::Workspace {
        write.push(existing(workspace, "the workspace")?);
        for path in &config.allow_write {
            // A configured path that does not exist (yet) grants nothing.
            if let Ok(path) = path.canonicalize() {
                write.push(path);
            }
        }
    }
    for path in &req.allow_write {
        let path = existing(path, "allow_write")?;
        if config.agent && config.mode != Mode::None && !write.iter().any(|w| path.starts_with(w)) {
            return Err(widening(format!(
                "allow_write {} is outside what the configured agent sandbox lets tasks write",
                path.display()
            )));
        }
        if mode != Mode::None {
            write.push(path);
        }
    }
    let read = req
        .allow_read
        .iter()
        .map(|p| existing(p, "allow_read"))
        .collect::<Result<Vec<_>>>()?;
    if config.agent && !read.is_empty() {
        return Err(widening(
            "allow_read widens the configured agent sandbox".into(),
        ));
    }
    let deny = denied_paths(config, home, &read);
    let mut policy = Policy {
        mode,
        no_network,
        write: write.clone(),
        read,
        deny,
        network_filter: false,
    };
    let mut enforced_by = Vec::new();
    let mut missing = Vec::new();
    if mode != Mode::None {
        let needed = config.require_abi.max(MIN_LANDLOCK_ABI);
        match process::landlock_abi() {
            abi if abi >= needed => enforced_by.push(format!("landlock (ABI {abi})")),
            0 => missing.push(format!(
                "this kernel has no Landlock (sandbox {mode} needs Landlock ABI {needed} or later)"
            )),
            abi => missing.push(format!(
                "this kernel's Landlock ABI is {abi}; sandbox {mode} needs ABI {needed} or later"
            )),
        }
    }
    if no_network {
        let namespaces = if config.network_filter {
            Err("the config asks for the seccomp filter".to_owned())
        } else {
            process::network_namespaces()
        };
        match namespaces {
            Ok(()) => enforced_by.push("network namespace".to_owned()),
            // Where namespaces are refused, a filter on `socket` still
            // closes the network (loopback too).
            Err(_) if process::seccomp_available() => {
                policy.network_filter = true;
                enforced_by.push("seccomp (no sockets but unix ones)".to_owned());
            }
            Err(why) => missing.push(format!(
                "no_network needs a network namespace or seccomp: {why}"
            )),
        }
    }
    let allow_write = if mode == Mode::None {
        Vec::new()
    } else {
        write
    };
    if !missing.is_empty() {
        let why = missing.join("; ");
        if !req.fallback_none || config.agent {
            return Err(Error::SandboxUnavailable(if config.agent {
                why
            } else {
                format!("{why} (pass --sandbox-fallback none to run it unconfined)")
            }));
        }
        return Ok(Resolved {
            record: Some(Sandbox {
                mode,
                no_network,
                allow_write,
                enforced_by: format!("none (fallback: {why})"),
            }),
            policy: None,
        });
    }
    Ok(Resolved {
        record: Some(Sandbox {
            mode,
            no_network,
            allow_write,
            enforced_by: enforced_by.join(" + "),
        }),
        policy: Some(policy),
    })
}

/// Refuses an agent's variables that change what runs rather than
/// configure it. Names the key, never the value.
pub fn check_agent_env(env: &[(String, String)]) -> Result<()> {
    for (key, _) in env {
        if AGENT_FORBIDDEN_ENV.contains(&key.as_str()) {
            return Err(Error::InvalidEnv(
                key.clone(),
                "agents may not set it (it changes which programs and libraries run)",
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// What the summary of a failed task under this policy adds.
    pub fn failure_note(&self) -> String {
        let mut what = Vec::new();
        if self.mode != Mode::None {
            what.push("a denied read or write");
        }
        if self.no_network {
            what.push("a blocked network connection");
        }
        format!(
            "the task ran sandboxed ({}{}): {} may be why it failed",
            self.mode,
            if self.no_network { ", no network" } else { "" },
            what.join(" or ")
        )
    }
}

fn widening(what: String) -> Error {
    Error::InvalidArgument(format!(
        "{what}; an agent's call may only narrow the sandbox (see `bgtask config`)"
    ))
}

fn existing(path: &Path, what: &str) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| Error::InvalidArgument(format!("{what} {}: {e}", path.display())))
}

/// The denied paths: the credential list under the user's home, the
/// configured ones and bgtask's home, each also as its real path (a
/// symlinked `~/.ssh` is denied where it points), minus what `read`
/// re-allows.
fn denied_paths(config: &SandboxConfig, home: &Path, read: &[PathBuf]) -> Vec<PathBuf> {
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let mut listed: Vec<PathBuf> = user_home
        .iter()
        .flat_map(|h| DENIED_UNDER_HOME.iter().map(move |p| h.join(p)))
        .collect();
    listed.extend(config.deny.iter().cloned());
    listed.push(home.to_owned());
    let mut out = Vec::new();
    for path in listed {
        let path = if path.is_absolute() {
            path
        } else {
            continue;
        };
        // One `stat` for the many listed paths that do not exist; only an
        // existing one is resolved (realpath costs a call per component).
        if path.exists() {
            if let Ok(real) = path.canonicalize() {
                if real != path {
                    out.push(real);
                }
            }
        }
        out.push(path);
    }
    out.retain(|d| !read.iter().any(|r| d.starts_with(r)));
    out.sort();
    out.dedup();
    out
}

fn serialize_paths<S: serde::Serializer>(
    paths: &[PathBuf],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(mode: Mode, no_network: bool) -> SandboxConfig {
        SandboxConfig {
            agent: true,
            mode,
            no_network,
            ..SandboxConfig::default()
        }
    }

    #[test]
    fn modes_order_from_none_to_read_only_and_parse() {
        assert!(Mode::None < Mode::Workspace && Mode::Workspace < Mode::ReadOnly);
        for mode in [Mode::None, Mode::Workspace, Mode::ReadOnly] {
            assert_eq!(mode.as_str().parse::<Mode>().unwrap(), mode);
        }
        assert!("everything".parse::<Mode>().is_err());
    }

    #[test]
    fn an_agent_cannot_widen_its_default_but_may_narrow_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = agent(Mode::Workspace, true);
        for req in [
            SandboxRequest {
                mode: Some(Mode::None),
                ..SandboxRequest::default()
            },
            SandboxRequest {
                no_network: Some(false),
                ..SandboxRequest::default()
            },
            SandboxRequest {
                allow_write: vec!["/".into()],
                ..SandboxRequest::default()
            },
            SandboxRequest {
                allow_read: vec!["/".into()],
                ..SandboxRequest::default()
            },
        ] {
            let err = resolve(&cfg, &req, dir.path(), Path::new("/nonexistent"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("only narrow"), "{req:?}: {err}");
        }
        if process::landlock_abi() >= MIN_LANDLOCK_ABI {
            let narrower = SandboxRequest {
                mode: Some(Mode::ReadOnly),
                ..SandboxRequest::default()
            };
            let got = resolve(&cfg, &narrower, dir.path(), Path::new("/x"));
            if let Ok(got) = got {
                let record = got.record.unwrap();
                assert_eq!(record.mode, Mode::ReadOnly);
                assert!(record.no_network);
            }
        }
    }

    #[test]
    fn agents_may_not_set_variables_that_change_what_runs() {
        let env = vec![("LD_PRELOAD".to_owned(), "/tmp/evil.so".to_owned())];
        let err = check_agent_env(&env).unwrap_err().to_string();
        assert!(err.contains("LD_PRELOAD") && !err.contains("evil"), "{err}");
        assert!(check_agent_env(&[("RUST_LOG".into(), "debug".into())]).is_ok());
    }

    #[test]
    fn an_unreachable_abi_fails_closed_unless_the_person_asks_for_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SandboxConfig {
            require_abi: 1000,
            ..SandboxConfig::default()
        };
        let mut req = SandboxRequest {
            mode: Some(Mode::Workspace),
            ..SandboxRequest::default()
        };
        let err = resolve(&cfg, &req, dir.path(), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("ABI 1000"), "{err}");
        req.fallback_none = true;
        let got = resolve(&cfg, &req, dir.path(), Path::new("/x")).unwrap();
        assert!(got.policy.is_none());
        assert!(got
            .record
            .unwrap()
            .enforced_by
            .starts_with("none (fallback"));
    }
}
