//! `bgtask mcp`: an MCP server on stdio (official `rmcp` SDK) over the
//! core `Service`. Tools run and inspect tasks; every tool result opens with
//! the session's completions nobody has shown yet, within a byte budget
//! (`format::BLOCK_BUDGET`; the rest is counted and shown by later
//! results). A completion is claimed in the store when it is put in a
//! result, so concurrent servers of one session show it once, and
//! acknowledged only when the client evidently received the result
//! (`transport.rs`); if this server dies first, the claim is void and the
//! completion is shown again. Each task is a resource
//! `bgtask://tasks/{task_id}` whose subscribers are told when it changes
//! state.
//!
//! The default session is derived from the canonical working directory, so
//! an agent restarted in the same project receives the completions of the
//! tasks it started before.

pub(crate) mod format;
mod interact;
pub(crate) mod notices;
mod resources;
mod tools;
mod transport;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use rmcp::model::{
    CallToolResult, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{tool_handler, ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};

use bgtask_core::{Config, Service};

use format::{BlockEntry, BLOCK_BUDGET};
use resources::Subscriptions;
use tools::{into_result, Answer, Block};
use transport::{Receipts, StdioTransport};

/// The MCP server's state; cheap to clone (handlers get a clone each).
#[derive(Clone)]
pub struct BgMcp {
    service: Arc<Service>,
    /// Default working directory of `bash`.
    cwd: Option<PathBuf>,
    /// What each result showed, acknowledged once the client has it.
    receipts: Arc<Receipts>,
    subscriptions: Arc<Subscriptions>,
    /// Notifications beside completions shown so far (issue 16).
    notes: Arc<notices::Shown>,
}

/// The session `bgtask mcp` uses when none is given: one per project
/// directory, see [`session_of_dir`].
pub fn default_session() -> Result<String> {
    let cwd = std::env::current_dir()?;
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    Ok(session_of_dir(&cwd))
}

/// `dir:<path>` for a path that is valid UTF-8 (as always). Any other path
/// gives `dir-bytes:<path>` with each byte that is not part of valid UTF-8
/// written `\xNN` and each backslash doubled, so two directories never
/// share a session (the prefixes keep the two forms apart).
pub(crate) fn session_of_dir(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = dir.as_os_str().as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return format!("dir:{text}");
    }
    let mut session = String::from("dir-bytes:");
    for chunk in bytes.utf8_chunks() {
        session.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            session.push_str(&format!("\\x{byte:02x}"));
        }
    }
    session
}

/// Runs the MCP server until the client disconnects.
pub fn run(config: Config) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = runtime.block_on(async move {
        let service = Arc::new(Service::open(config)?);
        let subscriptions = Subscriptions::start(Arc::clone(&service))?;
        let receipts = Receipts::start(Arc::clone(&service))?;
        let server = BgMcp {
            service,
            cwd: std::env::current_dir().ok(),
            receipts: Arc::clone(&receipts),
            subscriptions,
            notes: Arc::default(),
        };
        let running = server.serve(StdioTransport::new(receipts)).await?;
        running.waiting().await?;
        anyhow::Ok(0)
    });
    // Tool calls still blocked in a wait must not keep the process alive
    // once the client is gone.
    runtime.shutdown_background();
    code
}

impl BgMcp {
    /// Runs `work` on a blocking worker and wraps its answer in a tool
    /// result that opens with completions nobody has shown yet; what the
    /// result shows is acknowledged once the client evidently received it.
    async fn answer<F>(
        &self,
        request: rmcp::model::RequestId,
        work: F,
    ) -> Result<CallToolResult, McpError>
    where
        F: FnOnce(&BgMcp) -> Result<Answer, bgtask_core::Error> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.notes.settle(&me.service);
            let answer = work(&me).unwrap_or_else(|e| Answer::failed(&e));
            let mut block = me.claim_block();
            let (notes, notes_json) = me.notes.block(&me.service);
            block.text = match (notes.is_empty(), block.text.take()) {
                (true, text) => text,
                (false, text) => Some(text.unwrap_or_default() + &notes),
            };
            let mut shown: Vec<_> = block.ids.clone();
            shown.extend(answer.held.clone());
            me.receipts.shown(request, shown);
            let mut result = into_result(block, answer);
            // One `notifications` list: completions first, then the other
            // kinds, each with its `kind`.
            if let Some(serde_json::Value::Object(map)) = &mut result.structured_content {
                if !notes_json.is_empty() {
                    let list = map
                        .entry("notifications")
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                    if let serde_json::Value::Array(list) = list {
                        list.extend(notes_json);
                    }
                }
            }
            result
        })
        .await
        .map_err(|e| McpError::internal_error(format!("tool failed: {e}"), None))
    }

    /// Claims the completions that fit the block's budget and renders them.
    fn claim_block(&self) -> Block {
        let mut entries = Vec::new();
        let mut room = BLOCK_BUDGET;
        let claimed = self.service.claim_completions(|c| {
            let entry = BlockEntry::of(c);
            let cost = entry.cost();
            // The first always fits: entries are bounded well below the budget.
            if cost > room && !entries.is_empty() {
                return false;
            }
            room = room.saturating_sub(cost);
            entries.push(entry);
            true
        });
        match claimed {
            Ok(claimed) => Block {
                ids: claimed.completions.into_iter().map(|c| c.task_id).collect(),
                text: (!entries.is_empty() || claimed.left > 0)
                    .then(|| format::completions_block(&entries, claimed.left)),
                json: entries.into_iter().map(|e| e.json).collect(),
                left: claimed.left,
            },
            Err(e) => {
                tracing::warn!("cannot read completions: {e}");
                Block::default()
            }
        }
    }
}

#[tool_handler]
impl ServerHandler for BgMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(rmcp::model::Implementation::new("bgtask", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "bgtask runs shell commands as durable background tasks. Use `bash` for any command; \
                 long ones continue in the background and their completion is reported at the start of \
                 a later tool result. Use bash_wait to block for them, bash_output to read output, \
                 bash_kill to stop them.",
            )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let service = Arc::clone(&self.service);
        blocking(move || resources::list(&service)).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let service = Arc::clone(&self.service);
        blocking(move || resources::read(&service, &request.uri)).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let service = Arc::clone(&self.service);
        let uri = request.uri.clone();
        let status = blocking(move || resources::check_subscribable(&service, &uri)).await?;
        self.subscriptions.add(request.uri, status, context.peer);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(resources::accepted(
            &self.service,
            &self.subscriptions,
            requested,
        ))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        self.subscriptions.listen(context).await;
        Ok(())
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, McpError> + Send + 'static,
) -> Result<T, McpError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| McpError::internal_error(format!("request failed: {e}"), None))?
}
