//! serve's side of issue 16: `bash` with `ready`, `bash_watch`,
//! `bash_unwatch`, `bash_wait` with `until`, `bash_drain_completions`
//! with `all_kinds`, and the push frames `bash_ready`,
//! `bash_ready_failed`, `bash_watch_match`.

use serde_json::{json, Value};

use bgtask_core::protocol::rpc::RpcError;
use bgtask_core::protocol::{
    ready_result, NotificationsResult, Until, UnwatchParams, WaitParams, WatchParams, WatchResult,
};
use bgtask_core::{BashRequest, Notification, Service};

use super::methods::{result, Reply};

/// `bash` with `ready`: runs in the background, answered once ready or
/// once its readiness failed (with the reason and the output tail).
pub fn bash_ready(service: &Service, request: &BashRequest) -> Reply {
    let (task, timed_out) = service.run_until_ready(&request.spawn)?;
    Ok(ready_result(service, &task, timed_out))
}

pub fn watch(service: &Service, p: WatchParams) -> Reply {
    let watch = service.watch(&p.into())?;
    result(&WatchResult {
        watch_id: watch.watch_id.clone(),
        watch,
    })
}

pub fn unwatch(service: &Service, p: UnwatchParams) -> Reply {
    result(&service.unwatch(&p.watch_id)?)
}

/// `bash_wait` with `until: "ready"` or `"notification"`.
pub fn wait(service: &Service, p: &WaitParams, timeout: Option<u64>) -> Reply {
    match p.until {
        Until::Notification => result(&NotificationsResult {
            notifications: service.wait_notification(timeout)?,
        }),
        Until::Ready => result(&service.wait_ready(&p.task_ids, timeout)?),
        Until::End => Err(RpcError::invalid_params("invalid params: until")),
    }
}

/// `bash_drain_completions` with `all_kinds: true`.
pub fn drain_all(service: &Service) -> Reply {
    result(&NotificationsResult {
        notifications: service.pending_notifications()?,
    })
}

/// The push frame of a notification beside completions: its method name
/// (`bash_ready`, `bash_ready_failed`, `bash_watch_match`) and params.
pub fn frame(n: &Notification) -> (String, Value) {
    let mut params = json!({
        "notification_id": n.notification_id,
        "kind": n.kind,
        "task_id": n.task_id,
        "session": n.session,
        "watch_id": n.watch_id,
        "created_at": n.created_at,
        "summary": n.summary,
    });
    if let (Value::Object(out), Value::Object(detail)) = (&mut params, &n.detail) {
        for (k, v) in detail {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    (format!("bash_{}", n.kind.as_str()), params)
}
