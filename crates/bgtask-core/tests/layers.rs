//! The core's modules stand in layers, and a module imports only from the
//! layers below its own (ARCHITECTURE.md draws them). Checked here on the
//! sources themselves, so a new `use crate::…` that reaches upward, or a
//! new module without a layer, fails the build's tests.

#![allow(
    clippy::unwrap_used,
    reason = "tests fail loudly on unexpected errors; `allow`, as none unwraps yet"
)]

use std::path::Path;

/// Lowest first. Modules of layer 0 may import each other (the error type,
/// the task types and units use one another); above it, a module imports
/// only from lower layers.
const LAYERS: &[&[&str]] = &[
    &[
        "clock", "error", "task", "units", "config", "settings", "output", "compact", "process",
        "ready", "interact", "sandbox",
    ],
    &["store"],
    &["control"],
    &["monitor", "slurm"],
    &["executor"],
    &["reconcile", "waiter"],
    &["service", "doctor"],
    &["wait", "agent", "hook"],
    &["notices"],
    &["protocol"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to (`store/tasks.rs` → store).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::NAME` a source text mentions.
fn crate_paths(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .filter(|(at, _)| {
            // `bgtask_core::` or `$crate::` are other things.
            !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, m)| {
            text[at + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// What the crate root re-exports, by name: `pub use store::set_busy_timeout;`
/// makes `crate::set_busy_timeout` an import from `store`.
fn root_exports(lib: &str) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for statement in lib.split(';') {
        let Some(at) = statement.find("pub use ") else {
            continue;
        };
        let path = &statement[at + "pub use ".len()..];
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        for name in rest.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                names.push((name.to_owned(), module.trim().to_owned()));
            }
        }
    }
    names
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_of_the_core_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).expect("read lib.rs"));
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = module_of(relative);
        if module == "lib" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module {module} has no layer",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for used in crate_paths(&text) {
            let used = exports
                .iter()
                .find(|(name, _)| *name == used)
                .map_or(used, |(_, module)| module.clone());
            if used == module || used.is_empty() {
                continue;
            }
            match layer_of(&used) {
                None => wrong.push(format!(
                    "{}: crate::{used} has no layer",
                    relative.display()
                )),
                Some(theirs) if theirs > own || (theirs == own && own > 0) => wrong.push(format!(
                    "{}: {module} (layer {own}) imports crate::{used} (layer {theirs})",
                    relative.display()
                )),
                Some(_) => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
