//! The store: the home directory's layout (every path under it is built
//! here), the SQLite database (tasks, the completion outbox, metadata) and
//! the ballast. The output files themselves are written and read by
//! `output.rs`, and the control sockets bound by `process/`, at paths the
//! store gives.
//!
//! Invariants:
//! - every state transition is one transaction guarded by the status it
//!   expects, so a terminal status is final and concurrent writers (CLI,
//!   monitors, servers) cannot lose or overwrite each other's updates;
//! - a completion is inserted in the same transaction as the terminal
//!   transition, at most one per task;
//! - rows and databases written by a newer bgtask are refused, never rewritten.

mod groups;
mod holders;
mod home;
mod interact;
mod jobs;
mod notify;
mod outbox;
mod pause;
mod quiet;
mod schema;
mod tasks;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::task::TaskId;

pub use groups::{validate_group_name, validate_label, Adoption, Group, QueueSpec, Scheduled};
pub use home::disk_share;
pub use notify::{ClaimScope, Pending, PendingClaim, WatchHit};
pub use outbox::{Claimed, PREVIEW_BYTES};
pub use quiet::commit_mark;
pub use schema::set_busy_timeout;
pub(crate) use schema::SCHEMA_VERSION;
pub use tasks::{FinishRecord, LiveTask, NewTask};

/// The monitors' diagnostics file in the home directory (their stderr).
const MONITOR_LOG: &str = "monitor.log";

/// Where monitors write their own diagnostics, for a home that may not be
/// open as a store yet (a starter opens it before the store).
pub fn monitor_log_path(home: &Path) -> PathBuf {
    home.join(MONITOR_LOG)
}

/// An open store at a home directory.
pub struct Store {
    home: PathBuf,
    db_path: PathBuf,
    conn: Connection,
    /// No store exists at `home`: this one is empty, in memory, and never
    /// writes a file (see `open_existing`).
    absent: bool,
}

/// How much memory SQLite may cache; the monitor (one per task) keeps it small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSize {
    Small,
    Default,
}

impl Store {
    /// Creates the home directory if needed and checks it is safe.
    pub fn prepare_home(home: &Path) -> Result<()> {
        home::prepare(home)
    }

    /// Opens (creating if needed) the store in `home`.
    pub fn open(home: &Path, cache: CacheSize) -> Result<Store> {
        home::prepare(home)?;
        let db_path = home.join(home::DB_NAME);
        // Opening may need room for the WAL index; on a full disk, use the
        // ballast so that reading and recording ends keep working.
        let conn = match schema::open(&db_path, cache) {
            Err(Error::Store { source, .. })
                if tasks::is_disk_full(&source) && home::release_ballast(home) =>
            {
                schema::open(&db_path, cache)?
            }
            other => other?,
        };
        Ok(Store {
            home: home.to_owned(),
            db_path,
            conn,
            absent: false,
        })
    }

    /// Opens the store in `home` for a command that has nothing to write
    /// to a store that does not exist (list, status, logs, completions…).
    /// If there is no store, nothing is created: the result is an empty
    /// store in memory that writes no file, so reads answer as for an
    /// empty store (no tasks, unknown task ids, no completions).
    pub fn open_existing(home: &Path, cache: CacheSize) -> Result<Store> {
        if home::is_store(home)? {
            return Store::open(home, cache);
        }
        let db_path = home.join(home::DB_NAME);
        let conn = schema::open_empty().map_err(|source| Error::Store {
            path: db_path.clone(),
            source,
        })?;
        Ok(Store {
            home: home.to_owned(),
            db_path,
            conn,
            absent: true,
        })
    }

    pub fn stdout_path(&self, id: &TaskId) -> PathBuf {
        stdout_path(&self.home, id)
    }

    pub fn stderr_path(&self, id: &TaskId) -> PathBuf {
        stderr_path(&self.home, id)
    }

    /// The store's home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The file touched after every state transition; servers watch it.
    pub fn events_path(&self) -> PathBuf {
        self.home.join("events")
    }

    /// The directory of the tasks' output files.
    pub fn output_dir(&self) -> PathBuf {
        output_dir(&self.home)
    }

    /// Where monitors write their own diagnostics.
    pub fn monitor_log_path(&self) -> PathBuf {
        monitor_log_path(&self.home)
    }

    /// Re-creates the disk-space reserve if it was used up.
    pub fn ensure_ballast(&self) {
        if !self.absent {
            home::ensure_ballast(&self.home);
        }
    }

    /// Tells watchers that some task changed state.
    pub fn touch_events(&self) {
        if !self.absent {
            home::touch(&self.events_path());
        }
    }

    /// Removes a task's output files (missing files are fine).
    pub fn remove_output_files(&self, id: &TaskId) -> Result<()> {
        if self.absent {
            return Ok(());
        }
        // `<id>.end`: what a Slurm job's wrapper wrote (slurm/job.rs).
        let end = self.output_dir().join(format!("{id}.end"));
        for path in [self.stdout_path(id), self.stderr_path(id), end] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("cannot remove output file", path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn db_err(&self, source: rusqlite::Error) -> Error {
        store_error(&self.db_path, source)
    }
}

/// A database error of the store at `db`. "Database is locked" names the
/// processes holding the write lock (from `/proc/locks`) and says when
/// they are stopped, so the user knows what to resume or end.
pub(crate) fn store_error(db: &Path, source: rusqlite::Error) -> Error {
    let source = match &source {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DatabaseBusy => {
            let holders = holders::db_writers(db);
            if holders.is_empty() {
                source
            } else {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(e.extended_code),
                    Some(format!(
                        "database is locked by {}{}",
                        holders::list(&holders),
                        holders::advice(&holders)
                    )),
                )
            }
        }
        _ => source,
    };
    Error::Store {
        path: db.to_owned(),
        source,
    }
}

/// The directory of the tasks' output files in the store at `home`.
pub fn output_dir(home: &Path) -> PathBuf {
    home.join("out")
}

/// The control socket of task `id`'s monitor in the store at `home`
/// (`HOME/ctl/<id>.sock`; the control module speaks on it).
pub fn control_socket_path(home: &Path, id: &TaskId) -> PathBuf {
    home.join("ctl").join(format!("{id}.sock"))
}

/// The private temporary directory of sandboxed task `id` (its `TMPDIR`,
/// `HOME/tmp/<id>`; created by its monitor, removed when the task ends).
pub fn task_tmp_path(home: &Path, id: &TaskId) -> PathBuf {
    home.join("tmp").join(id.as_str())
}

/// Where a task's stdout is kept in the store at `home`.
pub fn stdout_path(home: &Path, id: &TaskId) -> PathBuf {
    output_dir(home).join(format!("{id}.out"))
}

/// Where a task's stderr is kept in the store at `home`.
pub fn stderr_path(home: &Path, id: &TaskId) -> PathBuf {
    output_dir(home).join(format!("{id}.err"))
}

/// Creates a task's two output files (0600, must not exist yet) in the
/// store at `home`.
pub fn create_output_files(home: &Path, id: &TaskId) -> Result<(std::fs::File, std::fs::File)> {
    let out = home::create_private_file(&stdout_path(home, id))?;
    let err = home::create_private_file(&stderr_path(home, id))?;
    Ok((out, err))
}
