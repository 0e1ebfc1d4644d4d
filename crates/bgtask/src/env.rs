//! The task's extra environment, from `--env` and `--env-file`. Errors
//! name the variable (and the file and line), never its value.

use std::path::Path;

use anyhow::Result;

use bgtask_core::Error;

/// The pairs for `run`: the files' first, in order, then `--env`; a later
/// setting of a key replaces an earlier one.
pub fn task_env(files: &[impl AsRef<Path>], flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut set = |(key, value): (String, String)| {
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
    };
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read(file).map_err(|source| Error::EnvFile {
            path: file.to_owned(),
            source,
        })?;
        for (number, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
                continue;
            }
            let place = format!("--env-file {}, line {}", file.display(), number + 1);
            let line = std::str::from_utf8(line)
                .map_err(|_| Error::InvalidArgument(format!("{place}: not valid UTF-8")))?;
            set(pair(line, &place)?);
        }
    }
    for flag in flags {
        set(pair(flag, "--env")?);
    }
    Ok(pairs)
}

/// `KEY=VALUE`, or `KEY` alone for bgtask's own value of KEY.
fn pair(text: &str, place: &str) -> Result<(String, String), Error> {
    let (key, value) = match text.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    };
    let key = key.trim();
    let bad = |why: &str| Error::InvalidArgument(format!("{place}: {why}"));
    if key.is_empty() {
        return Err(bad("the name before '=' is empty"));
    }
    if key.contains(|c: char| c.is_whitespace() || c == '\0') {
        return Err(bad(&format!(
            "{:?} is not a variable name (expected KEY=VALUE or KEY)",
            key.chars().take(40).collect::<String>()
        )));
    }
    let value = match value {
        Some(value) => value.to_owned(),
        None => match std::env::var_os(key) {
            Some(value) => value
                .into_string()
                .map_err(|_| bad(&format!("bgtask's own value of {key} is not valid UTF-8")))?,
            None => {
                return Err(bad(&format!(
                    "{key} is not set in bgtask's environment (pass {key}=VALUE, or export {key})"
                )))
            }
        },
    };
    Ok((key.to_owned(), value))
}
