//! `bgtask mcp`: an MCP server on stdio (official `rmcp` SDK) over the
//! core `Service`. Tools run and inspect tasks; every tool result opens with
//! the session's completions not yet shown (acknowledged once included);
//! each task is a resource `bgtask://tasks/{task_id}` whose subscribers are
//! told when it changes state.
//!
//! The default session is derived from the canonical working directory, so
//! an agent restarted in the same project receives the completions of the
//! tasks it started before.

mod format;
mod resources;
mod tools;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use rmcp::model::{
    CallToolResult, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{tool_handler, ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;

use bgtask_core::{Config, Service};

use resources::Subscriptions;
use tools::{into_result, Answer};

/// The MCP server's state; cheap to clone (handlers get a clone each).
#[derive(Clone)]
pub struct BgMcp {
    service: Arc<Service>,
    /// Default working directory of `bash`.
    cwd: Option<PathBuf>,
    /// Serialises "read completions, include, acknowledge" so concurrent
    /// tool calls never show the same completion twice.
    delivering: Arc<Mutex<()>>,
    subscriptions: Arc<Subscriptions>,
}

/// The session `bgtask mcp` uses when none is given: one per project
/// directory.
pub fn default_session() -> Result<String> {
    let cwd = std::env::current_dir()?;
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    Ok(format!("dir:{}", cwd.display()))
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
        let server = BgMcp {
            service,
            cwd: std::env::current_dir().ok(),
            delivering: Arc::new(Mutex::new(())),
            subscriptions,
        };
        let running = server.serve(rmcp::transport::stdio()).await?;
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
    /// result that opens with any completions not yet shown.
    async fn answer<F>(&self, work: F) -> Result<CallToolResult, McpError>
    where
        F: FnOnce(&BgMcp) -> Result<Answer, bgtask_core::Error> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let answer = work(&me).unwrap_or_else(|e| Answer::failed(&e));
            let block = me.deliver_completions();
            into_result(block, answer)
        })
        .await
        .map_err(|e| McpError::internal_error(format!("tool failed: {e}"), None))
    }

    /// The completions block and its JSON, acknowledging what it includes.
    fn deliver_completions(&self) -> Option<(String, serde_json::Value)> {
        let _guard = self.delivering.lock().unwrap_or_else(|e| e.into_inner());
        let completions = match self.service.completions() {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!("cannot read completions: {e}");
                return None;
            }
        };
        let ids: Vec<_> = completions.iter().map(|c| c.task_id.clone()).collect();
        if let Err(e) = self.service.ack(&ids) {
            tracing::warn!("cannot acknowledge completions: {e}");
        }
        Some((format::completions_block(&completions), json!(completions)))
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
        resources::parse_uri(&request.uri)?;
        self.subscriptions.add(request.uri, context.peer);
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
        Some(resources::accepted(requested))
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
