//! Integration tests: `bgtask serve` run as a child process and driven over
//! its stdin and stdout, as an agent plugin drives it.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[path = "../shared/client.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared client")]
mod client;
mod fixture;

mod completions;
mod errors;
mod hardening;
mod interactive;
mod lifecycle;
mod notices;
mod output;
mod pause;
mod requests;
mod sandbox;
mod settings;
