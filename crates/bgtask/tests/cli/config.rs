//! Settings: `bgtask config`, the config file, environment variables and
//! flags, and the defaults people's and agents' tasks get from them.

use crate::fixture::*;

/// The `bgtask config --json` entry for `key`: (value, source).
fn setting(bg: &Bg, cmd: &mut std::process::Command, key: &str) -> (String, String) {
    let run = bg.run_with(cmd.args(["--json", "config"])).ok();
    let entry = &run.json()["settings"][key];
    (
        entry["value"].as_str().unwrap().to_owned(),
        entry["source"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_persons_task_has_no_hard_timeout_unless_asked() {
    let bg = Bg::new();
    let task = bg.run(&["--json", "run", "--", "true"]).ok().json();
    assert_eq!(task["timeout_ms"], serde_json::Value::Null, "{task}");
    let (value, source) = setting(&bg, &mut bg.cmd(), "run.timeout");
    assert_eq!((value.as_str(), source.as_str()), ("none", "default"));
    let (value, _) = setting(&bg, &mut bg.cmd(), "agent.timeout");
    assert_eq!(value, "30m", "agents' tasks keep a 30-minute limit");
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let bg = Bg::new();
    bg.write_config("[run]\ntimeout = \"2h\"\nmax_output = \"1MiB\"\n");
    let from_file = bg.run(&["--json", "run", "true"]).ok().json();
    assert_eq!(from_file["timeout_ms"], 2 * 3600 * 1000);
    assert_eq!(from_file["max_output_bytes"], 1 << 20, "{from_file}");

    let mut env = bg.cmd();
    env.env("BGTASK_TIMEOUT", "90s");
    let from_env = bg.run_with(env.args(["--json", "run", "true"])).ok().json();
    assert_eq!(from_env["timeout_ms"], 90_000);
    let (value, source) = setting(&bg, bg.cmd().env("BGTASK_TIMEOUT", "90s"), "run.timeout");
    assert_eq!(
        (value.as_str(), source.as_str()),
        ("1m30s", "env BGTASK_TIMEOUT")
    );
    let (_, source) = setting(&bg, &mut bg.cmd(), "run.max_output");
    assert_eq!(source, "config file");

    let mut flag = bg.cmd();
    flag.env("BGTASK_TIMEOUT", "90s");
    let from_flag = bg
        .run_with(flag.args(["--json", "run", "--timeout", "none", "true"]))
        .ok()
        .json();
    assert_eq!(from_flag["timeout_ms"], serde_json::Value::Null);
}

#[test]
fn config_names_the_file_and_shows_every_setting_with_its_source() {
    let bg = Bg::new();
    let run = bg.run(&["config"]).ok();
    let file = bg.config_dir().join("bgtask/config.toml");
    assert!(
        run.stdout
            .starts_with(&format!("config file: {} (not found", file.display())),
        "{run:?}"
    );
    for key in [
        "home",
        "session",
        "max_running",
        "run.timeout",
        "agent.timeout",
        "agent.max_output",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{key} "))),
            "{key} missing: {run:?}"
        );
    }
    assert!(
        run.stdout.contains(&bg.home.display().to_string())
            && run.stdout.contains("env BGTASK_HOME"),
        "{run:?}"
    );
    // Showing the settings creates no store.
    assert!(!bg.home.exists());
}

#[test]
fn a_bad_config_file_is_one_line_naming_file_line_and_key_and_starts_nothing() {
    let bg = Bg::new();
    bg.write_config("max_running = 4\n[run]\ntimout = \"5m\"\n");
    let run = bg.run(&["run", "--", "true"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("config.toml: line 3") && run.stderr.contains("timout"),
        "{run:?}"
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(!bg.home.exists(), "nothing may be stored: {:?}", bg.home);
}

#[test]
fn a_zero_timeout_says_to_use_none() {
    let bg = Bg::new();
    let run = bg.run(&["run", "--timeout", "0", "--", "true"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("use \"none\" for no limit"), "{run:?}");
    let mut env = bg.cmd();
    env.env("BGTASK_AGENT_TIMEOUT", "0s");
    let run = bg.run_with(env.arg("config"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("BGTASK_AGENT_TIMEOUT: 0 would end"),
        "{run:?}"
    );
    assert!(!bg.home.exists());
}

#[test]
fn a_named_config_file_that_is_missing_is_an_error() {
    let bg = Bg::new();
    let missing = bg.path("nowhere.toml");
    let mut cmd = bg.cmd();
    cmd.env("BGTASK_CONFIG", &missing);
    let run = bg.run_with(cmd.arg("config"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{run:?}"
    );
}
