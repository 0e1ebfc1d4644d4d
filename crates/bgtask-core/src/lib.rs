//! bgtask-core: durable background shell tasks.
//!
//! A task is a shell command started in the background under its own small
//! monitor process, recorded in an SQLite store, with its output in capped
//! files and its end delivered as a completion to its session. Everything
//! goes through [`Service`]; see ARCHITECTURE.md for the data flow.

pub mod agent;
mod clock;
pub mod compact;
mod config;
pub mod control;
mod doctor;
mod error;
mod executor;
pub mod hook;
pub mod interact;
pub mod monitor;
mod notices;
pub mod output;
mod process;
pub mod protocol;
pub mod ready;
mod reconcile;
pub mod sandbox;
mod service;
pub mod settings;
pub mod slurm;
mod store;
mod task;
pub mod units;
mod wait;
mod waiter;

pub use agent::{BashOutcome, BashRequest, Claimed, DEFAULT_OUTPUT_BUDGET};
pub use clock::now_ms;
pub use config::{
    Config, Engine, QueueRequest, SpawnRequest, StreamChoice, TaskDefaults, DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_RUNNING, DEFAULT_SESSION, DEFAULT_TIMEOUT_MS,
};
pub use doctor::{doctor, DoctorReport, Finding};
pub use error::{Error, ErrorKind, Result};
pub use notices::{completion_notification, readiness_result, NotificationId, WatchRequest};
pub use process::Signal;
pub use service::Restart;
pub use service::{
    GcReport, Launch, ListRequest, OutputFile, Service, TaskStatus, DEFAULT_GC_AGE_MS,
};
pub use store::{set_busy_timeout, Group, Pending, PendingClaim};
pub use task::{
    Completion, Notification, NotificationKind, Readiness, ReadyOutcome, ReadyState, Status, Task,
    TaskId, Watch, DEFAULT_GROUP,
};
pub use wait::WaitOutcome;
pub use waiter::EventWatch;
