//! Integration tests: `bgtask hook AGENT` fed real hook events on stdin
//! against real tasks, and `bgtask setup AGENT` in scratch projects and a
//! scratch HOME. (The real agent CLIs are driven by `e2e/`, see
//! docs/agents.md.)

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[path = "../shared/client.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared client")]
mod client;
#[path = "../shared/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod fixture;

mod hooks;
mod kinds;
mod opencode;
mod setup;
