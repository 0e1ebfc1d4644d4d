//! What the store keeps of interactive tasks (issue 18): the terminal's
//! size after a resize and the signals sent with `bgtask signal`. Input
//! itself is never stored.

use rusqlite::params;

use super::Store;
use crate::error::Result;
use crate::interact::Interaction;
use crate::task::{Status, TaskId};

/// `status IN (…live…)`, written from `Status::is_live`.
fn live_set() -> String {
    let live: Vec<String> = Status::ALL
        .into_iter()
        .filter(|s| s.is_live())
        .map(|s| format!("'{s}'"))
        .collect();
    format!("({})", live.join(","))
}

impl Store {
    /// Adds `signal` (its stored name) to a live task's history; false if
    /// the task is not live.
    pub fn record_signal(&self, id: &TaskId, signal: &str) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE tasks SET signals_sent = \
                     json_insert(COALESCE(signals_sent, '[]'), '$[#]', ?2) \
                     WHERE task_id = ?1 AND status IN {}",
                    live_set()
                ),
                params![id.as_str(), signal],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(changed == 1)
    }

    /// Records a live task's new way of input (a terminal's new size).
    pub fn set_interaction(&self, id: &TaskId, interaction: Interaction) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                &format!(
                    "UPDATE tasks SET io = ?2 WHERE task_id = ?1 AND status IN {}",
                    live_set()
                ),
                params![id.as_str(), interaction.stored()],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(changed == 1)
    }
}
