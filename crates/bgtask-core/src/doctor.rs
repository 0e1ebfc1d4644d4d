//! `doctor`: checks a store and repairs what it can. It works even when the
//! store cannot be opened normally (a corrupt database, an unsafe home), so
//! it is the documented way back from a damaged store.
//!
//! Invariant: repairs never delete a task record or an output file. A
//! corrupt database is
//! moved aside (kept for inspection or manual recovery), never overwritten.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::clock::now_ms;
use crate::reconcile::reconcile_all;
use crate::store::{CacheSize, Store, SCHEMA_VERSION};

/// One check and what came of it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub repaired: bool,
    pub detail: String,
}

/// Everything `doctor` found.
#[derive(Clone, Debug, Serialize)]
pub struct DoctorReport {
    #[serde(serialize_with = "crate::task::serialize_path")]
    pub home: PathBuf,
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    /// True when every problem found was repaired.
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.ok || f.repaired)
    }

    fn add(&mut self, check: &'static str, ok: bool, repaired: bool, detail: impl Into<String>) {
        self.findings.push(Finding {
            check,
            ok,
            repaired,
            detail: detail.into(),
        });
    }
}

/// Checks the store at `home`; with `repair`, fixes what it can.
pub fn doctor(home: &Path, repair: bool) -> DoctorReport {
    let mut report = DoctorReport {
        home: home.to_owned(),
        findings: Vec::new(),
    };
    if !check_home(home, repair, &mut report) {
        return report;
    }
    let db = home.join("bgtask.db");
    let healthy = match check_database(&db, repair, &mut report) {
        Database::Unusable => return report,
        Database::Healthy => true,
        Database::MovedAside => false,
    };
    // Without --repair nothing is written: a home without a database stays
    // without one (and a folder that is not a store is never made one).
    let store = if repair {
        Store::open(home, CacheSize::Default)
    } else {
        Store::open_existing(home, CacheSize::Default)
    };
    match store {
        Ok(mut store) => check_tasks(&mut store, repair && healthy, &mut report),
        Err(e) => report.add("store", false, false, format!("cannot open: {e}")),
    }
    report
}

fn check_home(home: &Path, repair: bool, report: &mut DoctorReport) -> bool {
    let meta = match std::fs::metadata(home) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.add(
                "home",
                true,
                false,
                "does not exist yet (created on first use)",
            );
            return false;
        }
        Err(e) => {
            report.add(
                "home",
                false,
                false,
                format!("cannot read {}: {e}", home.display()),
            );
            return false;
        }
    };
    if !meta.is_dir() {
        report.add(
            "home",
            false,
            false,
            format!(
                "{} is not a directory: move it away or pass another --home",
                home.display()
            ),
        );
        return false;
    }
    if meta.uid() != crate::process::effective_uid() {
        report.add(
            "home",
            false,
            false,
            "owned by another user: refusing to use or change it",
        );
        return false;
    }
    if meta.mode() & 0o077 != 0 {
        let fixed = repair
            && std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).is_ok();
        report.add(
            "home",
            false,
            fixed,
            format!("mode {:o}, should be 700", meta.mode() & 0o777),
        );
        return fixed;
    }
    report.add("home", true, false, "private directory");
    true
}

/// What `check_database` left behind.
enum Database {
    Healthy,
    MovedAside,
    Unusable,
}

fn check_database(db: &Path, repair: bool, report: &mut DoctorReport) -> Database {
    let meta = match std::fs::symlink_metadata(db) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.add("database", true, false, "not created yet");
            return Database::Healthy;
        }
        Err(e) => {
            report.add(
                "database",
                false,
                false,
                format!("cannot open: {e}; left in place"),
            );
            return Database::Unusable;
        }
    };
    // Only a database that opened, was read and was found corrupt is moved
    // aside. One that cannot be opened (permissions, another owner, not a
    // file) may hold every task: left where it is, for its owner to fix.
    let cannot_open = |report: &mut DoctorReport, why: String| {
        report.add(
            "database",
            false,
            false,
            format!("cannot open: {why}; left in place (not moved aside: it is not known to be corrupt)"),
        );
        Database::Unusable
    };
    if !meta.is_file() {
        return cannot_open(report, format!("{} is not a regular file", db.display()));
    }
    let euid = crate::process::effective_uid();
    if meta.uid() != euid {
        return cannot_open(
            report,
            format!(
                "{} is owned by uid {}, not by this user (uid {euid}); chown it back",
                db.display(),
                meta.uid()
            ),
        );
    }
    let verdict =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).and_then(|conn| {
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            Ok((version, check))
        });
    let problem = match verdict {
        Ok((version, _)) if version > SCHEMA_VERSION => {
            report.add(
                "database",
                false,
                false,
                format!("schema {version} is from a newer bgtask: upgrade bgtask (left untouched)"),
            );
            return Database::Unusable;
        }
        Ok((_, check)) if check == "ok" => {
            report.add("database", true, false, "integrity check passed");
            return Database::Healthy;
        }
        Ok((_, check)) => format!("integrity check failed: {check}"),
        Err(e) if is_corrupt(&e) => format!("corrupt: {e}"),
        Err(e) => {
            let hint = if std::fs::File::open(db).is_err() {
                " (check its permissions)"
            } else {
                ""
            };
            return cannot_open(report, format!("{e}{hint}"));
        }
    };
    if !repair {
        report.add(
            "database",
            false,
            false,
            format!(
                "{problem} (run `bgtask doctor --repair` to move it aside and start a fresh store)"
            ),
        );
        return Database::Unusable;
    }
    let aside = db.with_extension(format!("db.corrupt-{}", now_ms()));
    let moved = std::fs::rename(db, &aside);
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", db.display()));
        let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
    }
    match moved {
        Ok(()) => {
            report.add("database", false, true, format!("{problem}; moved aside to {} and starting a fresh store (output files are kept)", aside.display()));
            Database::MovedAside
        }
        Err(e) => {
            report.add(
                "database",
                false,
                false,
                format!("{problem}; cannot move it aside: {e}"),
            );
            Database::Unusable
        }
    }
}

/// Whether SQLite read the file and found it is not an intact database.
fn is_corrupt(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn check_tasks(store: &mut Store, repair: bool, report: &mut DoctorReport) {
    let live = store.all_live().map(|l| l.len()).unwrap_or(0);
    if repair {
        match reconcile_all(store) {
            Ok(0) => report.add(
                "tasks",
                true,
                false,
                format!("{live} live task(s), all supervised"),
            ),
            Ok(n) => report.add(
                "tasks",
                false,
                true,
                format!("{n} task(s) whose monitor had died recorded as failed"),
            ),
            Err(e) => report.add("tasks", false, false, format!("cannot reconcile: {e}")),
        }
    } else {
        let orphaned = store
            .all_live()
            .map(|l| {
                l.iter()
                    .filter(|t| t.owner.as_ref().is_none_or(|o| o.is_dead()))
                    .count()
            })
            .unwrap_or(0);
        report.add(
            "tasks",
            orphaned == 0,
            false,
            format!("{live} live task(s), {orphaned} without a monitor"),
        );
    }
    let known: std::collections::HashSet<String> = store
        .list(None, None)
        .map(|tasks| tasks.into_iter().map(|t| t.task_id.to_string()).collect())
        .unwrap_or_default();
    let out_dir = store.output_dir();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&out_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.rsplit_once('.').map_or(name.as_str(), |(id, _)| id);
        if !known.contains(id) {
            orphans.push(entry.path());
        }
    }
    if orphans.is_empty() {
        report.add(
            "output files",
            true,
            false,
            "every output file belongs to a task",
        );
    } else {
        // Never deleted: they may be all that is left of the tasks of a
        // lost or moved-aside database.
        report.add(
            "output files",
            true,
            false,
            format!(
                "{} output file(s) without a task record, left in place in {}",
                orphans.len(),
                out_dir.display()
            ),
        );
    }
    if repair {
        let swept = crate::process::Cgroup::sweep_stale(std::time::Duration::from_secs(60));
        if swept > 0 {
            report.add(
                "cgroups",
                false,
                true,
                format!("removed {swept} empty cgroup(s) left by dead monitors"),
            );
        }
    }
}
