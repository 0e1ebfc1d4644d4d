//! `run`'s sandbox flags (docs/sandbox.md): what a person asks for; the
//! core decides the effective confinement (`bgtask_core::sandbox`).

use std::path::PathBuf;

use bgtask_core::sandbox::{Mode, SandboxRequest};

/// The sandbox flags of `bgtask run`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SandboxArgs {
    /// Confine the task: none, workspace (write only the working directory
    /// tree and a private TMPDIR; credential paths unreadable) or
    /// read-only [default: sandbox.run in `bgtask config`, built in: none]
    #[arg(long, value_parser = mode, value_name = "MODE")]
    pub sandbox: Option<Mode>,
    /// Also let the sandboxed task write PATH and beneath (repeatable)
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Let the sandboxed task read PATH although it is a denied
    /// credential path (repeatable)
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,
    /// No network: the task gets a network namespace of its own (loopback
    /// only) [default: sandbox.run_no_network]
    #[arg(long)]
    pub no_network: bool,
    /// What to do when the kernel cannot enforce the sandbox: refuse the
    /// task (the default), or "none": run it unconfined, recorded on it
    #[arg(long, value_parser = fallback, value_name = "none")]
    pub sandbox_fallback: Option<bool>,
}

impl SandboxArgs {
    pub fn request(&self) -> SandboxRequest {
        SandboxRequest {
            mode: self.sandbox,
            no_network: self.no_network.then_some(true),
            allow_write: self.allow_write.clone(),
            allow_read: self.allow_read.clone(),
            fallback_none: self.sandbox_fallback.unwrap_or(false),
            workspace: None,
        }
    }
}

fn mode(text: &str) -> Result<Mode, String> {
    text.parse().map_err(|e: bgtask_core::Error| e.to_string())
}

fn fallback(text: &str) -> Result<bool, String> {
    match text {
        "none" => Ok(true),
        _ => Err(format!(
            "{text:?} is not a fallback (the only one is \"none\": run unconfined)"
        )),
    }
}
