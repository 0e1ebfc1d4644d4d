//! What each harness sends and expects: which events inject, wake or
//! gate, and the shape of each answer.

use serde_json::{json, Value};

use super::{under_codex_exec, Action, Event, StopAnswer};

/// The harnesses `bgtask hook` and `bgtask setup` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Agent {
    /// Claude Code
    ClaudeCode,
    /// OpenAI Codex CLI
    Codex,
    /// Google Gemini CLI
    Gemini,
}

impl Agent {
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
        }
    }

    /// What to do with `event`.
    pub fn action(self, event: &Event) -> Action {
        // A result of one of bgtask's own tools already carried the
        // session's notifications.
        let own_tool = event
            .tool_name
            .as_deref()
            .is_some_and(|t| t.contains("bgtask"));
        match (self, event.name.as_str()) {
            (Agent::ClaudeCode | Agent::Codex, "SessionStart") => Action::Inject { summary: true },
            (Agent::ClaudeCode | Agent::Codex, "UserPromptSubmit") => {
                Action::Inject { summary: false }
            }
            (Agent::ClaudeCode | Agent::Codex, "PostToolUse") if !own_tool => {
                Action::Inject { summary: false }
            }
            (Agent::ClaudeCode, "Stop") => Action::Wake,
            (Agent::Codex, "Stop") if under_codex_exec() => Action::Gate,
            (Agent::Codex, "Stop") => Action::QueueWaiter,
            (Agent::Gemini, "SessionStart") => Action::Inject { summary: true },
            (Agent::Gemini, "BeforeAgent") => Action::Inject { summary: false },
            (Agent::Gemini, "AfterTool") if !own_tool => Action::Inject { summary: false },
            (Agent::Gemini, "AfterAgent") => Action::Gate,
            _ => Action::Ignore,
        }
    }

    /// The answer that adds `text` to the model's context.
    pub fn inject_answer(self, event: &str, text: &str) -> Value {
        json!({
            "hookSpecificOutput": {
                "hookEventName": event,
                "additionalContext": text,
            }
        })
    }

    /// The answer that hands `text` to the model instead of stopping.
    pub fn stop_answer(self, text: &str) -> StopAnswer {
        match self {
            Agent::ClaudeCode => StopAnswer::Stderr(text.to_owned()),
            Agent::Codex | Agent::Gemini => StopAnswer::Stdout(json!({
                "decision": "block",
                "reason": text,
            })),
        }
    }
}
