//! `bgtask setup`: merges into existing config files, idempotent,
//! `--dry-run` and `--remove`; never outside the scratch HOME and project.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::fixture::{Bg, Run};

/// `bgtask setup ARGS` in the fixture's project directory, with the
/// fixture's temp dir as HOME.
fn setup(bg: &Bg, args: &[&str]) -> Run {
    let project = bg.path("project");
    std::fs::create_dir_all(&project).unwrap();
    let mut cmd: Command = bg.cmd();
    cmd.current_dir(&project)
        .env_remove("CODEX_HOME")
        .arg("setup")
        .args(args);
    bg.run_with(&mut cmd)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn our_hook_commands(settings: &Value, event: &str) -> Vec<String> {
    settings["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["hooks"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h["command"].as_str().map(str::to_owned))
        .filter(|c| c.contains(" hook "))
        .collect()
}

#[test]
fn claude_code_project_setup_merges_is_idempotent_and_removes_cleanly() {
    let bg = Bg::new();
    let project = bg.path("project");
    std::fs::create_dir_all(project.join(".claude")).unwrap();
    let mcp = json!({"mcpServers": {"other": {"command": "other-server"}}});
    let settings = json!({
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}
    });
    std::fs::write(project.join(".mcp.json"), mcp.to_string()).unwrap();
    std::fs::write(project.join(".claude/settings.json"), settings.to_string()).unwrap();

    let run = setup(&bg, &["claude-code"]).ok();
    assert!(
        run.stdout.contains(".mcp.json") && run.stdout.contains("settings.json"),
        "{run:?}"
    );
    let written = read_json(&project.join(".mcp.json"));
    assert_eq!(written["mcpServers"]["other"], mcp["mcpServers"]["other"]);
    assert_eq!(written["mcpServers"]["bgtask"]["args"], json!(["mcp"]));
    assert!(
        written["mcpServers"]["bgtask"].get("env").is_none(),
        "no store path in the config"
    );
    let hooks = read_json(&project.join(".claude/settings.json"));
    assert_eq!(hooks["permissions"], settings["permissions"]);
    for event in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"] {
        assert_eq!(
            our_hook_commands(&hooks, event).len(),
            1,
            "{event}: {hooks}"
        );
    }
    let stop: Vec<Value> = hooks["hooks"]["Stop"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["hooks"].as_array().cloned().unwrap())
        .collect();
    assert!(
        stop.iter().any(|h| h["command"] == "notify-send done"),
        "{hooks}"
    );
    assert!(stop.iter().any(|h| h["asyncRewake"] == true), "{hooks}");

    let again = setup(&bg, &["claude-code"]).ok();
    assert!(again.stdout.contains("nothing to change"), "{again:?}");
    assert_eq!(read_json(&project.join(".claude/settings.json")), hooks);

    let dry = setup(&bg, &["claude-code", "--remove", "--dry-run"]).ok();
    assert!(dry.stdout.contains("would"), "{dry:?}");
    assert_eq!(read_json(&project.join(".claude/settings.json")), hooks);

    setup(&bg, &["claude-code", "--remove"]).ok();
    assert_eq!(read_json(&project.join(".mcp.json")), mcp);
    assert_eq!(read_json(&project.join(".claude/settings.json")), settings);
}

#[test]
fn codex_setup_edits_toml_in_place_and_passes_the_store_variables() {
    let bg = Bg::new();
    let project = bg.path("project");
    std::fs::create_dir_all(project.join(".codex")).unwrap();
    let original = "# my settings\nmodel = \"gpt-x\"  # the one I like\n\n[mcp_servers.other]\ncommand = \"other\"\n";
    std::fs::write(project.join(".codex/config.toml"), original).unwrap();

    setup(&bg, &["codex"]).ok();
    let config = std::fs::read_to_string(project.join(".codex/config.toml")).unwrap();
    assert!(
        config.starts_with(original),
        "formatting and comments kept:\n{config}"
    );
    assert!(config.contains("[mcp_servers.bgtask]"), "{config}");
    assert!(
        config.contains(r#"env_vars = ["BGTASK_HOME", "BGTASK_SESSION"]"#),
        "{config}"
    );
    let hooks = read_json(&project.join(".codex/hooks.json"));
    for event in ["SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"] {
        assert_eq!(
            our_hook_commands(&hooks, event).len(),
            1,
            "{event}: {hooks}"
        );
    }
    let again = setup(&bg, &["codex"]).ok();
    assert!(again.stdout.contains("nothing to change"), "{again:?}");

    setup(&bg, &["codex", "--remove"]).ok();
    assert_eq!(
        std::fs::read_to_string(project.join(".codex/config.toml")).unwrap(),
        original
    );
    assert!(
        !project.join(".codex/hooks.json").exists(),
        "a file only setup wrote is removed"
    );
}

#[test]
fn user_scope_writes_under_home_only() {
    let bg = Bg::new();
    let run = setup(&bg, &["gemini", "--scope", "user"]).ok();
    let settings = bg.dir.path().join(".gemini/settings.json");
    assert!(
        run.stdout.contains(&settings.display().to_string()),
        "{run:?}"
    );
    let written = read_json(&settings);
    assert_eq!(written["mcpServers"]["bgtask"]["args"], json!(["mcp"]));
    assert_eq!(our_hook_commands(&written, "AfterAgent").len(), 1);
    assert!(!bg.path("project/.gemini").exists());
}

#[test]
fn a_config_file_that_is_not_json_is_left_alone() {
    let bg = Bg::new();
    let project = bg.path("project");
    std::fs::create_dir_all(project.join(".gemini")).unwrap();
    std::fs::write(project.join(".gemini/settings.json"), "{ not json").unwrap();
    let run = setup(&bg, &["gemini"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("settings.json") && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join(".gemini/settings.json")).unwrap(),
        "{ not json"
    );
}

#[test]
fn codex_sandbox_mode_becomes_the_agent_tasks_sandbox() {
    let bg = Bg::new();
    let project = bg.path("project");
    std::fs::create_dir_all(project.join(".codex")).unwrap();
    // The user's Codex runs workspace-write without network.
    let user = bg.dir.path().join(".codex");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("config.toml"),
        "sandbox_mode = \"workspace-write\"\n",
    )
    .unwrap();
    let run = setup(&bg, &["codex"]).ok();
    assert!(
        run.stdout
            .contains("agent tasks sandboxed: workspace, no network"),
        "{run:?}"
    );
    let config = std::fs::read_to_string(project.join(".codex/config.toml")).unwrap();
    assert!(
        config.contains(
            r#"env = { BGTASK_AGENT_SANDBOX = "workspace", BGTASK_AGENT_NO_NETWORK = "1" }"#
        ),
        "{config}"
    );
    // The project's own Codex setting wins; network access is kept.
    std::fs::write(
        project.join(".codex/config.toml"),
        "sandbox_mode = \"workspace-write\"\n[sandbox_workspace_write]\nnetwork_access = true\n",
    )
    .unwrap();
    setup(&bg, &["codex"]).ok();
    let config = std::fs::read_to_string(project.join(".codex/config.toml")).unwrap();
    assert!(
        config.contains(r#"env = { BGTASK_AGENT_SANDBOX = "workspace" }"#),
        "{config}"
    );
    // danger-full-access: nothing to confine.
    std::fs::write(
        project.join(".codex/config.toml"),
        "sandbox_mode = \"danger-full-access\"\n",
    )
    .unwrap();
    setup(&bg, &["codex"]).ok();
    let config = std::fs::read_to_string(project.join(".codex/config.toml")).unwrap();
    assert!(!config.contains("BGTASK_AGENT_SANDBOX"), "{config}");
}

#[test]
fn claude_code_is_offered_the_workspace_sandbox_and_the_setting_reaches_bgtask() {
    let bg = Bg::new();
    let run = setup(&bg, &["claude-code"]).ok();
    assert!(
        run.stdout.contains("--sandbox workspace"),
        "offered: {run:?}"
    );
    setup(
        &bg,
        &["claude-code", "--sandbox", "workspace", "--no-network"],
    )
    .ok();
    let mcp = read_json(&bg.path("project").join(".mcp.json"));
    let env = &mcp["mcpServers"]["bgtask"]["env"];
    assert_eq!(
        env,
        &json!({"BGTASK_AGENT_SANDBOX": "workspace", "BGTASK_AGENT_NO_NETWORK": "1"})
    );
    // What the MCP server started with that environment applies to agents' tasks.
    let mut cmd = bg.cmd();
    for (key, value) in env.as_object().unwrap() {
        cmd.env(key, value.as_str().unwrap());
    }
    let config = bg.run_with(cmd.args(["--json", "config"])).ok().json();
    assert_eq!(config["settings"]["sandbox.agent"]["value"], "workspace");
    assert_eq!(
        config["settings"]["sandbox.agent_no_network"]["value"],
        "true"
    );
    assert_eq!(
        config["settings"]["sandbox.agent_no_network"]["source"],
        "env BGTASK_AGENT_NO_NETWORK"
    );
}

/// The plugin `bgtask setup opencode` installs: the file in the repo,
/// with this binary's command on its `BGTASK_COMMAND` line.
const OPENCODE_PLUGIN: &str = include_str!("../../../../integrations/opencode/bgtask.ts");

#[test]
fn opencode_setup_writes_the_mcp_entry_and_the_plugin_merges_and_removes_cleanly() {
    let bg = Bg::new();
    let project = bg.path("project");
    std::fs::create_dir_all(&project).unwrap();
    let config = json!({
        "$schema": "https://opencode.ai/config.json",
        "model": "anthropic/claude-x",
        "mcp": {"other": {"type": "local", "command": ["other-server"]}},
    });
    std::fs::write(project.join("opencode.json"), config.to_string()).unwrap();

    let run = setup(&bg, &["opencode"]).ok();
    let plugin = project.join(".opencode/plugin/bgtask.ts");
    assert!(
        run.stdout.contains("opencode.json") && run.stdout.contains("bgtask.ts"),
        "{run:?}"
    );
    let written = read_json(&project.join("opencode.json"));
    assert_eq!(written["model"], config["model"]);
    assert_eq!(written["mcp"]["other"], config["mcp"]["other"]);
    let entry = &written["mcp"]["bgtask"];
    assert_eq!(entry["type"], "local");
    assert_eq!(entry["enabled"], true);
    let command = entry["command"].as_array().unwrap();
    assert_eq!(command.last().unwrap(), "mcp", "{entry}");
    assert!(entry.get("environment").is_none(), "no store path: {entry}");
    // The plugin is the repo's file; it runs the same bgtask as the entry.
    let text = std::fs::read_to_string(&plugin).unwrap();
    let line = format!("const BGTASK_COMMAND = {}", command[0]);
    assert!(text.contains(&line), "{line} in the plugin");
    assert_eq!(
        text.replace(&line, "const BGTASK_COMMAND = \"bgtask\""),
        OPENCODE_PLUGIN
    );

    let again = setup(&bg, &["opencode"]).ok();
    assert!(again.stdout.contains("nothing to change"), "{again:?}");

    let dry = setup(&bg, &["opencode", "--remove", "--dry-run"]).ok();
    assert!(dry.stdout.contains("would remove"), "{dry:?}");
    assert!(plugin.exists());

    setup(&bg, &["opencode", "--remove"]).ok();
    assert_eq!(read_json(&project.join("opencode.json")), config);
    assert!(!plugin.exists(), "the plugin is removed");
}

#[test]
fn opencode_setup_creates_what_is_missing_and_its_removal_leaves_nothing() {
    let bg = Bg::new();
    let project = bg.path("project");
    setup(&bg, &["opencode", "--sandbox", "workspace"]).ok();
    let written = read_json(&project.join("opencode.json"));
    assert_eq!(
        written["mcp"]["bgtask"]["environment"],
        json!({"BGTASK_AGENT_SANDBOX": "workspace"})
    );
    assert!(project.join(".opencode/plugin/bgtask.ts").exists());
    setup(&bg, &["opencode", "--remove"]).ok();
    assert!(
        !project.join("opencode.json").exists(),
        "only ours: removed"
    );
    assert!(!project.join(".opencode/plugin/bgtask.ts").exists());
}

#[test]
fn opencode_user_scope_writes_under_the_config_dir_only() {
    let bg = Bg::new();
    let run = setup(&bg, &["opencode", "--scope", "user"]).ok();
    let dir = bg.config_dir().join("opencode");
    assert!(
        run.stdout
            .contains(&dir.join("opencode.json").display().to_string()),
        "{run:?}"
    );
    assert_eq!(
        read_json(&dir.join("opencode.json"))["mcp"]["bgtask"]["type"],
        "local"
    );
    assert!(dir.join("plugin/bgtask.ts").exists());
    assert!(!bg.path("project/opencode.json").exists());
    assert!(!bg.path("project/.opencode").exists());
}

#[test]
fn an_opencode_plugin_file_edited_by_hand_is_not_removed() {
    let bg = Bg::new();
    let project = bg.path("project");
    let plugin = project.join(".opencode/plugin/bgtask.ts");
    std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    std::fs::write(&plugin, "// my own plugin\n").unwrap();
    let run = setup(&bg, &["opencode"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("bgtask.ts") && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    setup(&bg, &["opencode", "--remove"]).ok();
    assert_eq!(
        std::fs::read_to_string(&plugin).unwrap(),
        "// my own plugin\n"
    );
}
