//! pueue, the nearest peer: installed with `cargo install pueue --locked`
//! when missing, and run as a private pueued (temporary config, state and
//! runtime directories, its own unix socket) that never touches the user's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::harness::time_ok;

pub struct Pueue {
    dir: TempDir,
    client: PathBuf,
    daemon: Child,
    pub version: String,
}

impl Pueue {
    /// Installs pueue if needed and starts a private daemon.
    pub fn start(root: &Path) -> Result<Pueue> {
        let (client, daemon_exe) = match find() {
            Some(found) => found,
            None => {
                eprintln!("== installing pueue (cargo install pueue --locked)");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["install", "pueue", "--locked"])
                    .current_dir(root)
                    .status()?;
                if !status.success() {
                    bail!("cargo install pueue --locked failed");
                }
                find().context("pueue installed but not found in PATH or ~/.cargo/bin")?
            }
        };
        let version = Command::new(&client).arg("--version").output()?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        let dir = tempfile::Builder::new().prefix("pueue-bench-").tempdir()?;
        let (data, run) = (dir.path().join("data"), dir.path().join("run"));
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&run)?;
        let config = dir.path().join("pueue.yml");
        std::fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {}\n  runtime_directory: {}\n  use_unix_socket: true\n  unix_socket_path: {}\n",
                data.display(),
                run.display(),
                run.join("pueue.socket").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("pueued.log"))?;
        let daemon = Command::new(&daemon_exe)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", daemon_exe.display()))?;
        let pueue = Pueue {
            dir,
            client,
            daemon,
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pueue.cmd(&["status"]).output()?.status.success() {
            if Instant::now() > deadline {
                bail!("pueued did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pueue)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--config")
            .arg(self.dir.path().join("pueue.yml"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `pueue ARGS` against the private daemon; it must succeed.
    pub fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args).output()?;
        if !out.status.success() {
            bail!(
                "pueue {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `pueue add -- true` then `pueue wait` on it; milliseconds.
    pub fn add_and_wait(&self) -> Result<f64> {
        let (add_ms, out) = time_ok(&mut self.cmd(&["add", "--print-task-id", "--", "true"]))?;
        let id = out.trim().to_owned();
        let (wait_ms, _) = time_ok(&mut self.cmd(&["wait", "--quiet", &id]))?;
        Ok(add_ms + wait_ms)
    }
}

impl Drop for Pueue {
    fn drop(&mut self) {
        let _ = self.cmd(&["shutdown"]).output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// `pueue` and `pueued` from PATH or cargo's bin directory.
fn find() -> Option<(PathBuf, PathBuf)> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain(cargo_bin).collect();
    let locate = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
    Some((locate("pueue")?, locate("pueued")?))
}
