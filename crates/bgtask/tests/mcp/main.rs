//! The MCP server driven by a real MCP client: the official Python SDK runs
//! the scripted session in `session.py` against `bgtask mcp`.
//!
//! The SDK comes from `BGTASK_TEST_PYTHON` (a Python with `mcp` installed,
//! as `.ci/run` provides) or else from a venv this test creates once under
//! the target directory. When that venv cannot be made (offline, no
//! python3) the test says so and skips; with `BGTASK_TEST_PYTHON` set it
//! never skips.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::path::{Path, PathBuf};
use std::process::Command;

mod interactive;

const BIN: &str = env!("CARGO_BIN_EXE_bgtask");
/// The SDK version the session script is written against.
const MCP_SDK: &str = "mcp==2.3.0";

/// A Python with the SDK, or why there is none.
fn python_with_sdk() -> Result<PathBuf, String> {
    // Given one (CI does), it is used as it is: a broken interpreter or a
    // missing SDK fails the test instead of skipping it.
    if let Some(python) = std::env::var_os("BGTASK_TEST_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    venv_with_sdk(&dir, Path::new("python3"))
}

/// The venv at `dir` with the SDK installed (created by `python3` on
/// first use), or why it cannot be had: no python3, no venv module, no
/// network for pip.
fn venv_with_sdk(dir: &Path, python3: &Path) -> Result<PathBuf, String> {
    let python = dir.join("bin/python");
    let ready = dir.join(".installed");
    if ready.exists() {
        return Ok(python);
    }
    let created = Command::new(python3)
        .args(["-m", "venv"])
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python3.display()))?;
    if !created.status.success() {
        return Err(format!(
            "cannot create a venv: {}",
            String::from_utf8_lossy(&created.stderr).trim()
        ));
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", MCP_SDK])
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !installed.status.success() {
        let why = String::from_utf8_lossy(&installed.stderr);
        let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "cannot install {MCP_SDK} (offline?): {}",
            why.trim()
        ));
    }
    std::fs::write(&ready, MCP_SDK).unwrap();
    Ok(python)
}

#[test]
fn a_machine_without_the_sdk_is_a_reason_to_skip() {
    // Every way of not getting the SDK (no interpreter, no venv module, pip
    // offline) ends in the same `Err`; a missing interpreter is the quick one.
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let why = venv_with_sdk(&venv, &dir.path().join("no-python3")).unwrap_err();
    assert!(why.starts_with("cannot run "), "{why}");
    assert!(!venv.join(".installed").exists());
}

#[test]
fn a_real_mcp_client_runs_the_scripted_session() {
    let python = match python_with_sdk() {
        Ok(python) => python,
        Err(why) => {
            // Offline, or no Python: nothing here can be checked. CI sets
            // BGTASK_TEST_PYTHON, so there this never skips.
            println!("skipped: no MCP SDK for the test client: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/session.py");
    // A finished task of another session: its completion must never show.
    let other = Command::new(BIN)
        .args([
            "run",
            "--wait",
            "30s",
            "--json",
            "--session",
            "someone-else",
            "--",
            "echo not yours",
        ])
        .env("BGTASK_HOME", &home)
        .output()
        .expect("run a task in another session");
    let other: serde_json::Value = serde_json::from_slice(&other.stdout).expect("task json");
    assert_eq!(other["status"], "completed");
    let output = Command::new(&python)
        .arg(&script)
        .arg(BIN)
        .arg(work.path())
        .env("BGTASK_HOME", &home)
        .env("OTHER_SESSION_TASK", other["task_id"].as_str().unwrap())
        .env_remove("BGTASK_SESSION")
        .env("HOME", work.path())
        .current_dir(work.path())
        .output()
        .expect("run the MCP session script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Whatever happened, end every task the session left running.
    let _ = Command::new(BIN)
        .args(["list", "--json", "--all-sessions"])
        .env("BGTASK_HOME", &home)
        .output()
        .map(|o| {
            let tasks: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            for task in tasks.as_array().into_iter().flatten() {
                if let Some(id) = task["task_id"].as_str() {
                    let _ = Command::new(BIN)
                        .args(["kill", "--grace", "0ms", id])
                        .env("BGTASK_HOME", &home)
                        .output();
                }
            }
        });
    assert!(
        output.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "MCP session failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    let checks = stdout.lines().filter(|l| l.starts_with("ok: ")).count();
    assert!(checks >= 40, "only {checks} checks ran:\n{stdout}");
}
