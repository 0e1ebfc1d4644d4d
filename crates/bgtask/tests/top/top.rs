//! `top`'s model and view from the binary's sources (the loop in its
//! `mod.rs` needs a terminal and is tested through tmux).

#[path = "../../src/top/model.rs"]
pub mod model;
#[path = "../../src/top/view.rs"]
pub mod view;
