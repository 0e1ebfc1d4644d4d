//! Integration tests: `bgtask serve` run as a child process and driven over
//! its stdin and stdout, as an agent plugin drives it.

mod client;
mod fixture;

mod completions;
mod errors;
mod hardening;
mod lifecycle;
mod output;
mod requests;
