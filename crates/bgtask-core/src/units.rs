//! Parsing and printing of the human units the CLI accepts: durations
//! (`500ms`, `90s`, `5m`, `1h`, `none`) and sizes (`4096`, `64KiB`, `1GiB`).

use crate::error::Error;

/// Longest duration accepted anywhere (100 years): longer ones are surely
/// a mistake, and every limit must stay far from overflowing a clock.
pub const MAX_DURATION_MS: u64 = 36_500 * 86_400_000;
/// Largest size accepted anywhere (1 EiB); sizes are stored as SQLite's
/// signed 64-bit integers.
pub const MAX_SIZE: u64 = 1 << 60;

/// Parses a duration into milliseconds. `none` (or `never`) gives `None`.
pub fn parse_duration_ms(text: &str) -> Result<Option<u64>, Error> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let (number, unit) = split_number(t);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad_duration(text)),
    };
    let value: u64 = number.parse().map_err(|_| bad_duration(text))?;
    match value.checked_mul(scale) {
        Some(ms) if ms <= MAX_DURATION_MS => Ok(Some(ms)),
        _ => Err(Error::InvalidArgument(format!(
            "duration {text:?} is too long (at most 36500d; use none for no limit)"
        ))),
    }
}

/// Parses a byte size (`4096`, `64KiB`, `100MiB`, `1GiB`; `K`/`M`/`G` and
/// `KB`/`MB`/`GB` are read as the binary units too).
pub fn parse_size(text: &str) -> Result<u64, Error> {
    let t = text.trim();
    let (number, unit) = split_number(t);
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad_size(text)),
    };
    let value: u64 = number.parse().map_err(|_| bad_size(text))?;
    match value.checked_mul(scale) {
        Some(bytes) if bytes <= MAX_SIZE => Ok(bytes),
        _ => Err(Error::InvalidArgument(format!(
            "size {text:?} is too large (at most 1048576TiB)"
        ))),
    }
}

/// Prints milliseconds compactly: `850ms`, `12s`, `30m`, `1h5m`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) if ms.is_multiple_of(1_000) || s >= 10 => format!("{s}s"),
        (0, 0, _) => format!("{:.1}s", ms as f64 / 1_000.0),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn split_number(t: &str) -> (&str, &str) {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    (number, unit.trim())
}

fn bad_duration(text: &str) -> Error {
    Error::InvalidArgument(format!(
        "invalid duration {text:?} (examples: 500ms, 90s, 5m, 1h, none)"
    ))
}

fn bad_size(text: &str) -> Error {
    Error::InvalidArgument(format!(
        "invalid size {text:?} (examples: 4096, 64KiB, 100MiB, 1GiB)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_documented_unit() {
        assert_eq!(parse_duration_ms("500ms").unwrap(), Some(500));
        assert_eq!(parse_duration_ms("90s").unwrap(), Some(90_000));
        assert_eq!(parse_duration_ms("5m").unwrap(), Some(300_000));
        assert_eq!(parse_duration_ms("1h").unwrap(), Some(3_600_000));
        assert_eq!(parse_duration_ms("none").unwrap(), None);
        for bad in ["", "5x", "-1s", "1.5s", "ms", "99999999999999999999h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sizes_parse_binary_units() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        for bad in ["", "1.5MiB", "12 parsecs", "-4"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(format_duration_ms(1_800_000), "30m");
        assert_eq!(format_duration_ms(450), "450ms");
        assert_eq!(format_duration_ms(1_500), "1.5s");
        assert_eq!(format_duration_ms(3_900_000), "1h5m");
    }
}
