//! Tasks as MCP resources: `bgtask://tasks/{task_id}`, read as the task's
//! status JSON, with `notifications/resources/updated` sent to subscribers
//! (legacy `resources/subscribe` and the newer `subscriptions/listen`)
//! whenever the task changes state.
//!
//! One thread sleeps on the store's events watch (no polling tick), looks
//! up the subscribed tasks that may still change, and marks the URIs of
//! those whose status changed *dirty*, in one set per subscriber; each subscriber's sender takes its whole set when
//! woken. A set cannot overflow (it holds each subscribed URI at most
//! once), so a slow client gets every update, late and coalesced if it
//! must, never none. Only this session's tasks are watched, so subscribing
//! to another session's task is refused.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam,
    SubscriptionFilter,
};
use rmcp::service::SubscriptionContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer};
use tokio::sync::Notify;

use bgtask_core::{ErrorKind, ListRequest, Service, Status, TaskId};

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
    let status = service.status(&id, TAIL_BYTES).map_err(lookup_error)?;
    let text = serde_json::to_string_pretty(&status)
        .map_err(|e| McpError::internal_error(e.to_string(), None))?;
    let mut contents = ResourceContents::text(text, uri);
    if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
        *mime_type = Some("application/json".into());
    }
    Ok(ReadResourceResult::new(vec![contents]).into())
}

/// The part of a `subscriptions/listen` filter we serve: this session's
/// task resources.
pub fn accepted(
    service: &Service,
    subscriptions: &Subscriptions,
    requested: &SubscriptionFilter,
) -> SubscriptionFilter {
    let mut filter = SubscriptionFilter::new();
    filter.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        uris.iter()
            .filter(|u| match check_subscribable(service, u) {
                Ok(status) => {
                    subscriptions.watch(u, status);
                    true
                }
                Err(_) => false,
            })
            .cloned()
            .collect()
    });
    filter
}

/// A failed lookup of a resource's task: an unknown task is "resource not
/// found", anything else a store error.
fn lookup_error(e: bgtask_core::Error) -> McpError {
    match e.kind() {
        ErrorKind::TaskNotFound => McpError::resource_not_found(e.to_string(), None),
        _ => store_error(e),
    }
}

fn store_error(e: bgtask_core::Error) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// Checks that `uri` names a task this server watches: one of its
/// session's (a task of another session is refused, clearly). Returns the
/// task's status.
pub fn check_subscribable(service: &Service, uri: &str) -> Result<Status, McpError> {
    let id = parse_uri(uri)?;
    let task = service.get(&id).map_err(lookup_error)?;
    if task.session != service.session() {
        return Err(McpError::invalid_params(
            format!(
                "task {id} belongs to another session ({:?}); this server sends updates only \
                 for tasks of its session ({:?}); read it with resources/read instead",
                task.session,
                service.session()
            ),
            None,
        ));
    }
    Ok(task.status)
}

/// The URIs one subscriber wants and those changed since it last sent.
#[derive(Default)]
struct Subscriber {
    wanted: BTreeSet<String>,
    dirty: BTreeSet<String>,
    wake: Arc<Notify>,
}

/// Every subscriber: the legacy `resources/subscribe` one (key 0) and one
/// per `subscriptions/listen` stream.
#[derive(Default)]
struct Registry {
    subscribers: HashMap<u64, Subscriber>,
    next: u64,
    /// The last status seen of each watched URI's task.
    watched: HashMap<String, Status>,
}

/// Subscribers and the watcher that marks their URIs dirty.
pub struct Subscriptions {
    registry: Mutex<Registry>,
    legacy_peer: Mutex<Option<Peer<RoleServer>>>,
}

const LEGACY: u64 = 0;

impl Subscriptions {
    /// Starts the watcher thread and the legacy sender.
    pub fn start(service: Arc<Service>) -> anyhow::Result<Arc<Subscriptions>> {
        let subs = Arc::new(Subscriptions {
            registry: Mutex::new(Registry {
                subscribers: HashMap::from([(LEGACY, Subscriber::default())]),
                next: LEGACY + 1,
                watched: HashMap::new(),
            }),
            legacy_peer: Mutex::new(None),
        });
        let watch = service.watch_events()?;
        let watcher = Arc::clone(&subs);
        std::thread::Builder::new()
            .name("bgtask-mcp-watch".into())
            .spawn(move || {
                // Only subscribed tasks still live can change: a wake costs
                // one lookup per such task, whatever the session's size.
                loop {
                    for (uri, id) in watcher.live_watched() {
                        match service.get(&id) {
                            Ok(task) => watcher.seen(&uri, task.status),
                            Err(e) if e.kind() == ErrorKind::TaskNotFound => {}
                            Err(e) => tracing::warn!("cannot read {id} for resource updates: {e}"),
                        }
                    }
                    if watch.wait(None).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the resource watcher: {e}"))?;
        let wake = Arc::clone(&subs.registry().subscribers[&LEGACY].wake);
        let sender = Arc::clone(&subs);
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                let peer = sender
                    .legacy_peer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let Some(peer) = peer else { continue };
                for uri in sender.take_dirty(LEGACY) {
                    let _ = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                        .await;
                }
            }
        });
        Ok(subs)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `uri`, whose task was just seen in `status` (a
    /// URI already watched keeps its last seen status).
    pub fn watch(&self, uri: &str, status: Status) {
        self.registry()
            .watched
            .entry(uri.to_owned())
            .or_insert(status);
    }

    /// The watched URIs whose task may still change.
    fn live_watched(&self) -> Vec<(String, TaskId)> {
        self.registry()
            .watched
            .iter()
            .filter(|(_, status)| !status.is_terminal())
            .filter_map(|(uri, _)| Some((uri.clone(), parse_uri(uri).ok()?)))
            .collect()
    }

    /// Stops watching URIs no subscriber wants any more.
    fn forget_unwanted(registry: &mut Registry) {
        let Registry {
            subscribers,
            watched,
            ..
        } = registry;
        watched.retain(|uri, _| subscribers.values().any(|s| s.wanted.contains(uri)));
    }

    /// Records a watched task's status; if it changed, marks the URI dirty
    /// for every subscriber that wants it.
    fn seen(&self, uri: &str, status: Status) {
        let mut registry = self.registry();
        match registry.watched.get_mut(uri) {
            Some(last) if *last != status => *last = status,
            _ => return,
        }
        for subscriber in registry.subscribers.values_mut() {
            if subscriber.wanted.contains(uri) && subscriber.dirty.insert(uri.to_owned()) {
                subscriber.wake.notify_one();
            }
        }
    }

    /// A subscriber's dirty URIs that it still wants, emptying its set.
    fn take_dirty(&self, key: u64) -> Vec<String> {
        let mut registry = self.registry();
        let Some(subscriber) = registry.subscribers.get_mut(&key) else {
            return Vec::new();
        };
        let dirty = std::mem::take(&mut subscriber.dirty);
        dirty
            .into_iter()
            .filter(|u| subscriber.wanted.contains(u))
            .collect()
    }

    /// A legacy `resources/subscribe` of a task seen in `status`.
    pub fn add(&self, uri: String, status: Status, peer: Peer<RoleServer>) {
        *self.legacy_peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
        self.watch(&uri, status);
        if let Some(legacy) = self.registry().subscribers.get_mut(&LEGACY) {
            legacy.wanted.insert(uri);
        }
    }

    pub fn remove(&self, uri: &str) {
        let mut registry = self.registry();
        if let Some(legacy) = registry.subscribers.get_mut(&LEGACY) {
            legacy.wanted.remove(uri);
        }
        Self::forget_unwanted(&mut registry);
    }

    /// Serves one `subscriptions/listen` until the client cancels it.
    pub async fn listen(&self, context: SubscriptionContext) {
        let wanted: BTreeSet<String> = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let wake = Arc::new(Notify::new());
        let key = {
            let mut registry = self.registry();
            let key = registry.next;
            registry.next += 1;
            registry.subscribers.insert(
                key,
                Subscriber {
                    wanted,
                    dirty: BTreeSet::new(),
                    wake: Arc::clone(&wake),
                },
            );
            key
        };
        let sink = context.sink().clone();
        loop {
            tokio::select! {
                _ = context.cancelled() => break,
                _ = wake.notified() => {
                    let mut failed = false;
                    for uri in self.take_dirty(key) {
                        if sink.notify_resource_updated(uri).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                }
            }
        }
        let mut registry = self.registry();
        registry.subscribers.remove(&key);
        Self::forget_unwanted(&mut registry);
    }
}
