//! `bgtask generate`: shell completions and the man page, generated from
//! the command-line definition.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::fixture::*;

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let bg = Bg::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = bg.run(&["generate", "completions", shell]).ok();
        assert!(run.stderr.is_empty(), "{shell}: {run:?}");
        for subcommand in ["run", "status", "kill", "generate"] {
            assert!(
                run.stdout.contains(subcommand),
                "{shell} completions should mention {subcommand:?}: {run:?}"
            );
        }
    }
    // Generating creates no store.
    assert!(!bg.home.exists(), "generate created {:?}", bg.home);
}

#[test]
fn the_bash_completion_script_is_valid_bash() {
    let bg = Bg::new();
    let script = bg.run(&["generate", "completions", "bash"]).ok().stdout;
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = bash.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_shell_is_a_one_line_usage_error() {
    let bg = Bg::new();
    let run = bg.run(&["generate", "completions", "cmd.exe"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("cmd.exe"), "{run:?}");
}

#[test]
fn the_man_page_is_roff_and_names_the_subcommands() {
    let bg = Bg::new();
    let run = bg.run(&["generate", "man"]).ok();
    let first_macro = run
        .stdout
        .lines()
        .find(|line| {
            !line.starts_with(".ie") && !line.starts_with(".el") && !line.starts_with(".\\\"")
        })
        .unwrap_or_default();
    assert!(first_macro.starts_with(".TH"), "{first_macro:?}: {run:?}");
    assert!(run.stdout.contains("run"), "{run:?}");
    assert!(run.stdout.contains("generate"), "{run:?}");
}

#[test]
fn generate_is_listed_in_help() {
    let bg = Bg::new();
    let help = bg.run(&["--help"]).ok().stdout;
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("generate")),
        "{help}"
    );
}
