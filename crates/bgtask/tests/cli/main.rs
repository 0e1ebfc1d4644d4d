//! Integration tests: the real `bgtask` binary against a temporary home.

mod fixture;

mod bad_input;
mod basics;
mod completions;
mod control;
mod durability;
mod home;
mod output;
mod paths;
mod secrets;
mod supervision;
mod terminal;
