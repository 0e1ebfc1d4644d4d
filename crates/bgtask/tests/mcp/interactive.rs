//! Interactive tasks through a real MCP client (issue 18): the Python SDK
//! runs `interactive.py` against `bgtask mcp` (skipped, as the main
//! session is, when the SDK cannot be had).

use std::path::Path;
use std::process::Command;

use super::{python_with_sdk, BIN};

#[test]
fn a_real_mcp_client_drives_interactive_tasks() {
    let python = match python_with_sdk() {
        Ok(python) => python,
        Err(why) => {
            println!("skipped: no MCP SDK for the test client: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/interactive.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(BIN)
        .arg(work.path())
        .env("BGTASK_HOME", &home)
        .env_remove("BGTASK_SESSION")
        .env("HOME", work.path())
        .current_dir(work.path())
        .output()
        .expect("run the MCP script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // End every task the script left running.
    if let Ok(o) = Command::new(BIN)
        .args(["list", "--json", "--all-sessions"])
        .env("BGTASK_HOME", &home)
        .output()
    {
        let tasks: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        for id in tasks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["task_id"].as_str())
        {
            let _ = Command::new(BIN)
                .args(["kill", "--grace", "0ms", id])
                .env("BGTASK_HOME", &home)
                .output();
        }
    }
    assert!(
        output.status.success() && stdout.contains("ALL CHECKS PASSED"),
        "MCP interactive session failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
