//! The agent protocol, once: the JSON-RPC framing of `bgtask serve`
//! (`rpc`), and the params and results of every method with the request
//! logic the servers share (`methods`). `bgtask serve`, the MCP tools and
//! the fuzz target all decode and answer through these types; where the
//! two servers differ, the difference is a named field of [`Defaults`].
//! docs/protocol.md is the contract these types keep.

mod interact;
mod methods;
pub mod rpc;

pub use interact::*;
pub use methods::*;
