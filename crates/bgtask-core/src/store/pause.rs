//! What the store keeps of paused tasks (issue 21): the status `paused`
//! with `paused_at`, written by whoever asks (the request, recorded first
//! as a kill is), and `held`, written by the task's monitor once it holds
//! the tree stopped or has let it go (its answer). A status that
//! disagrees with `held` is a request the monitor has not carried out
//! yet: reconcile tells it again (`executor/local.rs::tell_pause`).

use rusqlite::params;

use super::Store;
use crate::error::Result;
use crate::task::TaskId;

impl Store {
    /// Records a running local task as `paused` since `now_ms`; false if
    /// it is not `running` (or not local: only a monitor can pause).
    pub fn request_pause(&self, id: &TaskId, now_ms: i64) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE tasks SET status = 'paused', paused_at = ?2 \
                 WHERE task_id = ?1 AND status = 'running' AND executor = 'local'",
                params![id.as_str(), now_ms],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(changed == 1)
    }

    /// Records a paused task as `running` again; false if it is not
    /// `paused` (it was resumed, killed or ended meanwhile).
    pub fn request_resume(&self, id: &TaskId) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE tasks SET status = 'running', paused_at = NULL \
                 WHERE task_id = ?1 AND status = 'paused'",
                params![id.as_str()],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(changed == 1)
    }

    /// The monitor's answer: whether it holds the task's tree stopped now.
    pub fn set_held(&self, id: &TaskId, held: bool) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET held = ?2 WHERE task_id = ?1",
                params![id.as_str(), held],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }
}
