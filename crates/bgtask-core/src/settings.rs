//! The effective settings and where each one comes from. Four sources, in
//! rising precedence: built-in defaults, the config file
//! (`$XDG_CONFIG_HOME/bgtask/config.toml`, or the file `BGTASK_CONFIG`
//! names), environment variables, flags. `bgtask config` prints the result;
//! every command builds its [`Config`] from it, so a default lives here and
//! nowhere else.
//!
//! Tasks people start (`bgtask run`) and tasks agents start (`serve`, `mcp`)
//! have separate defaults: a person's dev server must not die after 30
//! minutes, an agent's forgotten test run should.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Engine, TaskDefaults, DEFAULT_MAX_RUNNING, DEFAULT_SESSION};
use crate::error::{Error, Result};
use crate::sandbox::{Mode, SandboxConfig, MIN_LANDLOCK_ABI};
use crate::units::{format_duration_ms, parse_duration_ms, parse_size};

/// Names the config file to read instead of the default one (which then
/// must exist).
pub const CONFIG_ENV: &str = "BGTASK_CONFIG";

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("config file"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One setting's value and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    fn set(&mut self, value: Option<T>, source: Source) {
        if let Some(value) = value {
            *self = Setting { value, source };
        }
    }
}

/// The defaults of one kind of task (a person's or an agent's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSettings {
    pub timeout: Setting<Option<u64>>,
    pub idle_timeout: Setting<Option<u64>>,
    pub max_output: Setting<u64>,
    /// Agents' tasks: a request may only narrow the sandbox.
    pub agent: bool,
}

impl TaskSettings {
    fn new(defaults: TaskDefaults, agent: bool) -> Self {
        TaskSettings {
            timeout: Setting::default(defaults.timeout_ms),
            idle_timeout: Setting::default(defaults.idle_timeout_ms),
            max_output: Setting::default(defaults.max_output),
            agent,
        }
    }

    /// The values alone.
    pub fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            timeout_ms: self.timeout.value,
            idle_timeout_ms: self.idle_timeout.value,
            max_output: self.max_output.value,
        }
    }
}

/// The flags that override settings (the rest are per command).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub home: Option<PathBuf>,
    pub session: Option<String>,
}

/// Every setting, with its source.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The config file consulted (`None`: no config directory is known).
    pub file: Option<PathBuf>,
    /// Whether that file exists and was read.
    pub file_found: bool,
    pub home: Setting<PathBuf>,
    pub session: Setting<String>,
    pub max_running: Setting<u32>,
    /// Where new tasks run unless a request names it (`BGTASK_EXECUTOR`).
    pub executor: Setting<Engine>,
    /// Tasks started with `bgtask run`.
    pub run: TaskSettings,
    /// Tasks started by agents through `serve` or `mcp`.
    pub agent: TaskSettings,
    /// The `[sandbox]` section (docs/sandbox.md).
    pub sandbox: SandboxSettings,
}

/// Sandbox defaults: a mode (and network) for people's tasks and one for
/// agents' tasks, extra writable and denied paths, and the Landlock ABI a
/// sandboxed task requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSettings {
    pub run: Setting<Mode>,
    pub agent: Setting<Mode>,
    pub run_no_network: Setting<bool>,
    pub agent_no_network: Setting<bool>,
    pub allow_write: Setting<Vec<PathBuf>>,
    pub deny: Setting<Vec<PathBuf>>,
    pub require_abi: Setting<u32>,
    /// How `no_network` is enforced: "namespace" (falling back to the
    /// filter where namespaces are refused) or "seccomp".
    pub network: Setting<String>,
}

/// The config file's contents. Unknown keys are errors: a misspelt
/// `timout` silently ignored would be worse.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    home: Option<String>,
    max_running: Option<u32>,
    executor: Option<String>,
    run: Option<FileTask>,
    agent: Option<FileTask>,
    sandbox: Option<FileSandbox>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    run: Option<String>,
    agent: Option<String>,
    run_no_network: Option<bool>,
    agent_no_network: Option<bool>,
    allow_write: Option<Vec<String>>,
    deny: Option<Vec<String>>,
    require_abi: Option<u32>,
    network: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTask {
    timeout: Option<String>,
    idle_timeout: Option<String>,
    max_output: Option<SizeValue>,
}

/// A size as a string with a unit or a plain number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl Settings {
    /// Reads the settings of this process: its environment and the config
    /// file, then `flags`.
    pub fn load(flags: &Flags) -> Result<Settings> {
        let env = |name: &str| std::env::var_os(name);
        let config_dir = || {
            use etcetera::BaseStrategy;
            etcetera::choose_base_strategy()
                .ok()
                .map(|s| s.config_dir())
        };
        Settings::load_from(flags, &env, config_dir)
    }

    /// [`Settings::load`] with the environment and the config directory
    /// given (tests pass their own).
    pub fn load_from(
        flags: &Flags,
        env_os: &dyn Fn(&str) -> Option<OsString>,
        config_dir: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Settings> {
        // Paths may be any bytes; every other value must be text.
        let env_path = |name: &str| env_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let env = |name: &str| -> Result<Option<String>> {
            env_os(name)
                .map(|v| {
                    v.into_string()
                        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8")))
                })
                .transpose()
        };
        let (file, must_exist) = match env_path(CONFIG_ENV) {
            Some(path) => (Some(path), true),
            None => (
                config_dir().map(|d| d.join("bgtask").join("config.toml")),
                false,
            ),
        };
        let parsed = match &file {
            Some(path) => read_file(path, must_exist)?,
            None => None,
        };
        let file_found = parsed.is_some();
        let parsed = parsed.unwrap_or_default();
        let in_file = |key: &str| match &file {
            Some(path) => format!("config file {}: {key}", path.display()),
            None => key.to_owned(),
        };

        let mut home = Setting::default(Config::default_home()?);
        if let Some(text) = &parsed.home {
            home.set(Some(expand_home(text, &in_file("home"))?), Source::File);
        }
        home.set(env_path("BGTASK_HOME"), Source::Env("BGTASK_HOME"));
        home.set(flags.home.clone(), Source::Flag("--home"));

        let mut session = Setting::default(DEFAULT_SESSION.to_owned());
        session.set(
            env("BGTASK_SESSION")?.filter(|s| !s.is_empty()),
            Source::Env("BGTASK_SESSION"),
        );
        session.set(flags.session.clone(), Source::Flag("--session"));
        if session.value.is_empty() {
            return Err(Error::InvalidArgument("the session name is empty".into()));
        }

        let mut max_running = Setting::default(DEFAULT_MAX_RUNNING);
        max_running.set(parsed.max_running, Source::File);
        if let Some(text) = env("BGTASK_MAX_RUNNING")? {
            let n = text.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("BGTASK_MAX_RUNNING={text:?} is not a number"))
            })?;
            max_running.set(Some(n), Source::Env("BGTASK_MAX_RUNNING"));
        }
        if max_running.value == 0 {
            return Err(Error::InvalidArgument(format!(
                "max_running is 0 ({}): no task could ever start",
                max_running.source
            )));
        }

        let mut executor = Setting::default(Engine::Local);
        if let Some(text) = &parsed.executor {
            let engine = text.parse().map_err(|e| within(&in_file("executor"), e))?;
            executor.set(Some(engine), Source::File);
        }
        if let Some(text) = env("BGTASK_EXECUTOR")?.filter(|s| !s.is_empty()) {
            let engine = text.parse().map_err(|e| within("BGTASK_EXECUTOR", e))?;
            executor.set(Some(engine), Source::Env("BGTASK_EXECUTOR"));
        }

        let mut run = TaskSettings::new(TaskDefaults::RUN, false);
        let mut agent = TaskSettings::new(TaskDefaults::AGENT, true);
        for (settings, section, prefix) in [
            (&mut run, &parsed.run, "BGTASK_"),
            (&mut agent, &parsed.agent, "BGTASK_AGENT_"),
        ] {
            let name = if prefix == "BGTASK_" { "run" } else { "agent" };
            if let Some(section) = section {
                section.apply(settings, &|key| in_file(&format!("{name}.{key}")))?;
            }
            apply_env(settings, prefix, &env)?;
        }

        let sandbox = SandboxSettings::load(parsed.sandbox.as_ref(), &in_file, &env)?;

        Ok(Settings {
            file,
            file_found,
            home,
            session,
            max_running,
            executor,
            run,
            agent,
            sandbox,
        })
    }

    /// The store configuration for a command whose tasks get `tasks`'s
    /// defaults.
    pub fn config(&self, tasks: &TaskSettings, monitor_exe: PathBuf) -> Config {
        Config {
            home: self.home.value.clone(),
            session: self.session.value.clone(),
            max_running: self.max_running.value,
            monitor_exe,
            tasks: tasks.defaults(),
            sandbox: self.sandbox.config(tasks.agent),
            executor: self.executor.value,
        }
    }

    /// Every setting as `(key, value, source)`, in a stable order, values
    /// printed as they would be written in the config file.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = vec![
            Entry::new(
                "home",
                self.home.value.display().to_string(),
                &self.home.source,
            ),
            Entry::new("session", self.session.value.clone(), &self.session.source),
            Entry::new(
                "max_running",
                self.max_running.value.to_string(),
                &self.max_running.source,
            ),
            Entry::new(
                "executor",
                self.executor.value.as_str().to_owned(),
                &self.executor.source,
            ),
        ];
        for (name, task) in [("run", &self.run), ("agent", &self.agent)] {
            out.push(Entry::new(
                &format!("{name}.timeout"),
                limit_text(task.timeout.value),
                &task.timeout.source,
            ));
            out.push(Entry::new(
                &format!("{name}.idle_timeout"),
                limit_text(task.idle_timeout.value),
                &task.idle_timeout.source,
            ));
            out.push(Entry::new(
                &format!("{name}.max_output"),
                size_text(task.max_output.value),
                &task.max_output.source,
            ));
        }
        let sb = &self.sandbox;
        let paths = |paths: &[PathBuf]| {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            format!("[{}]", shown.join(", "))
        };
        out.extend([
            Entry::new("sandbox.run", sb.run.value.to_string(), &sb.run.source),
            Entry::new(
                "sandbox.agent",
                sb.agent.value.to_string(),
                &sb.agent.source,
            ),
            Entry::new(
                "sandbox.run_no_network",
                sb.run_no_network.value.to_string(),
                &sb.run_no_network.source,
            ),
            Entry::new(
                "sandbox.agent_no_network",
                sb.agent_no_network.value.to_string(),
                &sb.agent_no_network.source,
            ),
            Entry::new(
                "sandbox.allow_write",
                paths(&sb.allow_write.value),
                &sb.allow_write.source,
            ),
            Entry::new("sandbox.deny", paths(&sb.deny.value), &sb.deny.source),
            Entry::new(
                "sandbox.require_abi",
                sb.require_abi.value.to_string(),
                &sb.require_abi.source,
            ),
            Entry::new(
                "sandbox.network",
                sb.network.value.clone(),
                &sb.network.source,
            ),
        ]);
        out
    }
}

/// One line of `bgtask config`.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub source: String,
}

impl Entry {
    fn new(key: &str, value: String, source: &Source) -> Entry {
        Entry {
            key: key.to_owned(),
            value,
            source: source.to_string(),
        }
    }
}

impl SandboxSettings {
    fn load(
        file: Option<&FileSandbox>,
        in_file: &dyn Fn(&str) -> String,
        env: &dyn Fn(&str) -> Result<Option<String>>,
    ) -> Result<SandboxSettings> {
        let mut s = SandboxSettings {
            run: Setting::default(Mode::None),
            agent: Setting::default(Mode::None),
            run_no_network: Setting::default(false),
            agent_no_network: Setting::default(false),
            allow_write: Setting::default(Vec::new()),
            deny: Setting::default(Vec::new()),
            require_abi: Setting::default(MIN_LANDLOCK_ABI),
            network: Setting::default("namespace".to_owned()),
        };
        let mode = |text: &str, place: &str| text.parse::<Mode>().map_err(|e| within(place, e));
        let paths = |list: &[String], key: &str| -> Result<Vec<PathBuf>> {
            list.iter().map(|p| expand_home(p, &in_file(key))).collect()
        };
        if let Some(f) = file {
            if let Some(text) = &f.run {
                s.run
                    .set(Some(mode(text, &in_file("sandbox.run"))?), Source::File);
            }
            if let Some(text) = &f.agent {
                s.agent
                    .set(Some(mode(text, &in_file("sandbox.agent"))?), Source::File);
            }
            s.run_no_network.set(f.run_no_network, Source::File);
            s.agent_no_network.set(f.agent_no_network, Source::File);
            if let Some(list) = &f.allow_write {
                s.allow_write
                    .set(Some(paths(list, "sandbox.allow_write")?), Source::File);
            }
            if let Some(list) = &f.deny {
                s.deny.set(Some(paths(list, "sandbox.deny")?), Source::File);
            }
            s.require_abi.set(f.require_abi, Source::File);
            if let Some(text) = &f.network {
                if !matches!(text.as_str(), "namespace" | "seccomp") {
                    return Err(Error::InvalidArgument(format!(
                        "{}: {text:?} is not namespace or seccomp",
                        in_file("sandbox.network")
                    )));
                }
                s.network.set(Some(text.clone()), Source::File);
            }
        }
        for (name, to) in [
            ("BGTASK_SANDBOX", &mut s.run),
            ("BGTASK_AGENT_SANDBOX", &mut s.agent),
        ] {
            if let Some(text) = env(name)? {
                to.set(Some(mode(&text, name)?), Source::Env(name));
            }
        }
        // Set by `bgtask setup` in an agent's MCP server entry.
        let no_net = "BGTASK_AGENT_NO_NETWORK";
        if let Some(text) = env(no_net)? {
            let on = match text.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "{no_net}={text:?} is not a boolean (1 or 0)"
                    )))
                }
            };
            s.agent_no_network.set(Some(on), Source::Env(no_net));
        }
        let abi = "BGTASK_SANDBOX_REQUIRE_ABI";
        if let Some(text) = env(abi)? {
            let n = text
                .trim()
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("{abi}={text:?} is not a number")))?;
            s.require_abi.set(Some(n), Source::Env(abi));
        }
        Ok(s)
    }

    /// The sandbox defaults of people's tasks, or of agents' (`agent`).
    pub fn config(&self, agent: bool) -> SandboxConfig {
        let (mode, no_network) = if agent {
            (&self.agent, &self.agent_no_network)
        } else {
            (&self.run, &self.run_no_network)
        };
        SandboxConfig {
            agent,
            mode: mode.value,
            no_network: no_network.value,
            allow_write: self.allow_write.value.clone(),
            deny: self.deny.value.clone(),
            require_abi: self.require_abi.value,
            network_filter: self.network.value == "seccomp",
        }
    }
}

impl FileTask {
    fn apply(&self, to: &mut TaskSettings, place: &dyn Fn(&str) -> String) -> Result<()> {
        if let Some(text) = &self.timeout {
            to.timeout
                .set(Some(timeout(text, &place("timeout"))?), Source::File);
        }
        if let Some(text) = &self.idle_timeout {
            to.idle_timeout
                .set(Some(timeout(text, &place("idle_timeout"))?), Source::File);
        }
        if let Some(value) = &self.max_output {
            let bytes = match value {
                SizeValue::Bytes(n) => *n,
                SizeValue::Text(text) => {
                    parse_size(text).map_err(|e| within(&place("max_output"), e))?
                }
            };
            to.max_output.set(Some(bytes), Source::File);
        }
        Ok(())
    }
}

/// `BGTASK_TIMEOUT`, `BGTASK_IDLE_TIMEOUT`, `BGTASK_MAX_OUTPUT` (for
/// `run`) or the same with `BGTASK_AGENT_` (for agents' tasks).
fn apply_env(
    to: &mut TaskSettings,
    prefix: &'static str,
    env: &dyn Fn(&str) -> Result<Option<String>>,
) -> Result<()> {
    let names: [&'static str; 3] = if prefix == "BGTASK_" {
        ["BGTASK_TIMEOUT", "BGTASK_IDLE_TIMEOUT", "BGTASK_MAX_OUTPUT"]
    } else {
        [
            "BGTASK_AGENT_TIMEOUT",
            "BGTASK_AGENT_IDLE_TIMEOUT",
            "BGTASK_AGENT_MAX_OUTPUT",
        ]
    };
    let [t, idle, max] = names;
    if let Some(text) = env(t)? {
        to.timeout.set(Some(timeout(&text, t)?), Source::Env(t));
    }
    if let Some(text) = env(idle)? {
        to.idle_timeout
            .set(Some(timeout(&text, idle)?), Source::Env(idle));
    }
    if let Some(text) = env(max)? {
        let bytes = parse_size(&text).map_err(|e| within(max, e))?;
        to.max_output.set(Some(bytes), Source::Env(max));
    }
    Ok(())
}

/// A time limit: a duration or `none`. Zero is refused with the fix: a
/// limit of 0 would end every task at once, and "no limit" is `none`.
pub fn parse_limit(text: &str) -> Result<Option<u64>> {
    match parse_duration_ms(text)? {
        Some(0) => Err(Error::InvalidArgument(
            "0 would end the task at once; use \"none\" for no limit".into(),
        )),
        limit => Ok(limit),
    }
}

fn timeout(text: &str, place: &str) -> Result<Option<u64>> {
    parse_limit(text).map_err(|e| within(place, e))
}

fn within(place: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument(message) => Error::InvalidArgument(format!("{place}: {message}")),
        other => other,
    }
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "none".to_owned(), format_duration_ms)
}

fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `~/x` as a path under the user's home; anything else must be absolute.
fn expand_home(text: &str, place: &str) -> Result<PathBuf> {
    let path = match text.strip_prefix("~/") {
        Some(rest) => etcetera::home_dir()
            .map_err(|_| {
                Error::InvalidArgument(format!("{place}: cannot find the home directory for ~"))
            })?
            .join(rest),
        None => PathBuf::from(text),
    };
    if !path.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "{place}: {text:?} is not an absolute path (or ~/…)"
        )));
    }
    Ok(path)
}

/// The parsed file; `None` when it does not exist and need not.
fn read_file(path: &Path, must_exist: bool) -> Result<Option<FileSettings>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "cannot read the config file {}: {e}",
                path.display()
            )))
        }
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().replace('\n', " ");
        Error::InvalidArgument(match line {
            Some(line) => format!("config file {}: line {line}: {message}", path.display()),
            None => format!("config file {}: {message}", path.display()),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::create_dir_all(dir.path().join("bgtask")).unwrap();
            std::fs::write(dir.path().join("bgtask/config.toml"), text).unwrap();
        }
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let home = Flags {
            home: Some("/tmp/h".into()),
            session: None,
        };
        Settings::load_from(&home, &|k| env.get(k).cloned(), || {
            Some(dir.path().to_owned())
        })
    }

    #[test]
    fn people_get_no_hard_timeout_and_agents_thirty_minutes_by_default() {
        let s = load(&[], None).unwrap();
        assert!(!s.file_found);
        assert_eq!(s.run.timeout, Setting::default(None));
        assert_eq!(s.agent.timeout, Setting::default(Some(30 * 60 * 1000)));
        assert_eq!(s.home.source, Source::Flag("--home"));
    }

    #[test]
    fn environment_beats_the_file_and_each_value_says_where_it_came_from() {
        let file = "max_running = 5\n[run]\ntimeout = \"2h\"\nmax_output = 4096\n[agent]\ntimeout = \"none\"\n";
        let s = load(&[("BGTASK_TIMEOUT", "90s")], Some(file)).unwrap();
        assert!(s.file_found);
        assert_eq!(s.max_running.value, 5);
        assert_eq!(s.max_running.source, Source::File);
        assert_eq!(s.run.timeout.value, Some(90_000));
        assert_eq!(s.run.timeout.source, Source::Env("BGTASK_TIMEOUT"));
        assert_eq!(s.run.max_output.value, 4096);
        assert_eq!(
            s.agent.timeout,
            Setting {
                value: None,
                source: Source::File
            }
        );
    }

    #[test]
    fn a_bad_file_names_the_file_the_line_and_the_key() {
        let err = load(&[], Some("[run]\ntimout = \"5m\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml: line 2") && err.contains("timout"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        let err = load(&[], Some("[agent]\ntimeout = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent.timeout") && err.contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn the_executor_is_local_unless_the_file_or_environment_says_slurm() {
        let s = load(&[], None).unwrap();
        assert_eq!(
            (s.executor.value, &s.executor.source),
            (Engine::Local, &Source::Default)
        );
        let s = load(&[], Some("executor = \"slurm\"\n")).unwrap();
        assert_eq!(
            (s.executor.value, &s.executor.source),
            (Engine::Slurm, &Source::File)
        );
        let s = load(
            &[("BGTASK_EXECUTOR", "slurm")],
            Some("executor = \"local\"\n"),
        )
        .unwrap();
        assert_eq!(s.executor.source, Source::Env("BGTASK_EXECUTOR"));
        assert_eq!(s.config(&s.run, "bgtask".into()).executor, Engine::Slurm);
        let entry = s
            .entries()
            .into_iter()
            .find(|e| e.key == "executor")
            .unwrap();
        assert_eq!(entry.value, "slurm");
        let err = load(&[("BGTASK_EXECUTOR", "k8s")], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BGTASK_EXECUTOR") && err.contains("k8s"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_timeout_says_to_use_none() {
        for (env, file) in [
            (vec![("BGTASK_AGENT_TIMEOUT", "0")], None),
            (vec![], Some("[run]\ntimeout = \"0s\"\n")),
        ] {
            let err = load(&env, file).unwrap_err().to_string();
            assert!(err.contains("use \"none\""), "{err}");
        }
    }

    #[test]
    fn the_sandbox_section_sets_each_kind_s_default_and_agents_narrow_only() {
        let file = "[sandbox]\nagent = \"workspace\"\nagent_no_network = true\ndeny = [\"/srv/secrets\"]\nrequire_abi = 99\n";
        let s = load(&[("BGTASK_SANDBOX", "read-only")], Some(file)).unwrap();
        assert_eq!(s.sandbox.agent.value, Mode::Workspace);
        assert_eq!(s.sandbox.run.source, Source::Env("BGTASK_SANDBOX"));
        let agent = s.config(&s.agent, "/bin/true".into()).sandbox;
        assert!(agent.agent && agent.no_network && agent.require_abi == 99);
        assert_eq!(agent.deny, [PathBuf::from("/srv/secrets")]);
        let run = s.config(&s.run, "/bin/true".into()).sandbox;
        assert!(!run.agent && run.mode == Mode::ReadOnly && !run.no_network);
        let keys: Vec<String> = s.entries().into_iter().map(|e| e.key).collect();
        assert!(keys.contains(&"sandbox.require_abi".to_owned()), "{keys:?}");
        let err = load(&[], Some("[sandbox]\nagent = \"open\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sandbox.agent") && err.contains("open"),
            "{err}"
        );
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let err = load(&[(CONFIG_ENV, "/nonexistent/bgtask.toml")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/bgtask.toml"), "{err}");
    }
}
