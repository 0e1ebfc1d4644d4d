//! Integration tests: the real `bgtask` binary against a temporary home.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod fixture;

mod bad_input;
mod basics;
mod completions;
mod config;
mod control;
mod durability;
mod generate;
mod home;
mod human;
mod ids;
mod interactive;
mod output;
mod paths;
mod pause;
mod queue;
mod readiness;
mod run_args;
mod sandbox;
mod secrets;
mod supervision;
mod terminal;
mod watches;
