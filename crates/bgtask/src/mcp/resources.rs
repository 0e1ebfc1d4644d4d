//! Tasks as MCP resources: `bgtask://tasks/{task_id}`, read as the task's
//! status JSON, with `notifications/resources/updated` sent to subscribers
//! (legacy `resources/subscribe` and the newer `subscriptions/listen`)
//! whenever the task changes state.
//!
//! One thread sleeps on the store's events watch and broadcasts the URIs of
//! tasks whose status changed; no polling tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
    SubscriptionFilter,
};
use rmcp::service::SubscriptionContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer};
use tokio::sync::broadcast;

use bgtask_core::{ListRequest, Service, Status, TaskId};

const PREFIX: &str = "bgtask://tasks/";
const TAIL_BYTES: u64 = 4_096;

/// The task id named by a resource URI.
pub fn parse_uri(uri: &str) -> Result<TaskId, McpError> {
    uri.strip_prefix(PREFIX)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            McpError::invalid_params(
                format!("not a bgtask task URI: {uri:?} (expected {PREFIX}<task_id>)"),
                None,
            )
        })
}

fn uri_of(id: &TaskId) -> String {
    format!("{PREFIX}{id}")
}

pub fn list(service: &Service) -> Result<ListResourcesResult, McpError> {
    let tasks = service.list(&ListRequest::default()).map_err(store_error)?;
    let resources = tasks
        .iter()
        .map(|t| {
            let mut r = Resource::new(uri_of(&t.task_id), t.task_id.to_string())
                .with_description(format!("{} — {}", t.status, t.command));
            r.mime_type = Some("application/json".into());
            r
        })
        .collect();
    Ok(ListResourcesResult {
        resources,
        ..Default::default()
    })
}

pub fn templates() -> ListResourceTemplatesResult {
    let mut template = ResourceTemplate::new(format!("{PREFIX}{{task_id}}"), "task")
        .with_description(
            "A bgtask task: its status, exit code and the end of its output, as JSON.",
        );
    template.mime_type = Some("application/json".into());
    ListResourceTemplatesResult {
        resource_templates: vec![template],
        ..Default::default()
    }
}

pub fn read(service: &Service, uri: &str) -> Result<ReadResourceResponse, McpError> {
    let id = parse_uri(uri)?;
    let status = service
        .status(&id, TAIL_BYTES)
        .map_err(|e| match e.kind() {
            "task_not_found" => McpError::resource_not_found(e.to_string(), None),
            _ => store_error(e),
        })?;
    let text = serde_json::to_string_pretty(&status)
        .map_err(|e| McpError::internal_error(e.to_string(), None))?;
    let mut contents = ResourceContents::text(text, uri);
    if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
        *mime_type = Some("application/json".into());
    }
    Ok(ReadResourceResult::new(vec![contents]).into())
}

/// The part of a `subscriptions/listen` filter we serve: task resources.
pub fn accepted(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut filter = SubscriptionFilter::new();
    filter.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        uris.iter()
            .filter(|u| parse_uri(u).is_ok())
            .cloned()
            .collect()
    });
    filter
}

fn store_error(e: bgtask_core::Error) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// Legacy subscribers, and the broadcast of changed task URIs.
pub struct Subscriptions {
    legacy: Mutex<HashMap<String, Peer<RoleServer>>>,
    changes: broadcast::Sender<String>,
}

impl Subscriptions {
    /// Starts the watcher thread and the legacy forwarder.
    pub fn start(service: Arc<Service>) -> anyhow::Result<Arc<Subscriptions>> {
        let (changes, _) = broadcast::channel(1024);
        let subs = Arc::new(Subscriptions {
            legacy: Mutex::new(HashMap::new()),
            changes: changes.clone(),
        });
        let watch = service.watch_events()?;
        let mut rx = changes.subscribe();
        std::thread::Builder::new()
            .name("bgtask-mcp-watch".into())
            .spawn(move || {
                let mut known: HashMap<TaskId, Status> = HashMap::new();
                loop {
                    if let Ok(tasks) = service.list(&ListRequest::default()) {
                        for task in tasks {
                            let changed = known.insert(task.task_id.clone(), task.status)
                                != Some(task.status);
                            if changed {
                                let _ = changes.send(uri_of(&task.task_id));
                            }
                        }
                    }
                    if watch.wait(None).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the resource watcher: {e}"))?;
        let forwarder = Arc::clone(&subs);
        tokio::spawn(async move {
            loop {
                let uri = match rx.recv().await {
                    Ok(uri) => uri,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let peer = forwarder
                    .legacy
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&uri)
                    .cloned();
                if let Some(peer) = peer {
                    let _ = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                        .await;
                }
            }
        });
        Ok(subs)
    }

    pub fn add(&self, uri: String, peer: Peer<RoleServer>) {
        self.legacy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uri, peer);
    }

    pub fn remove(&self, uri: &str) {
        self.legacy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uri);
    }

    /// Serves one `subscriptions/listen` until the client cancels it.
    pub async fn listen(&self, context: SubscriptionContext) {
        let wanted: Vec<String> = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let sink = context.sink().clone();
        let mut rx = self.changes.subscribe();
        loop {
            tokio::select! {
                _ = context.cancelled() => return,
                change = rx.recv() => match change {
                    Ok(uri) if wanted.contains(&uri) => {
                        if sink.notify_resource_updated(uri).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
