//! The MCP server driven by a real MCP client: the official Python SDK runs
//! the scripted session in `session.py` against `bgtask mcp`.
//!
//! The SDK comes from `BGTASK_TEST_PYTHON` (a Python with `mcp` installed,
//! as `.ci/run` provides) or else from a venv this test creates once under
//! the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bgtask");
/// The SDK version the session script is written against.
const MCP_SDK: &str = "mcp==2.3.0";

fn python_with_sdk() -> PathBuf {
    if let Some(python) = std::env::var_os("BGTASK_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
    let python = dir.join("bin/python");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let ready = dir.join(".installed");
    if !ready.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 -m venv");
        assert!(status.success(), "cannot create a venv for the MCP SDK");
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", MCP_SDK])
            .status()
            .expect("pip install");
        assert!(status.success(), "cannot install {MCP_SDK}");
        std::fs::write(&ready, MCP_SDK).unwrap();
    }
    python
}

#[test]
fn a_real_mcp_client_runs_the_scripted_session() {
    let python = python_with_sdk();
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
