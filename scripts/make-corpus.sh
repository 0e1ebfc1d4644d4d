#!/usr/bin/env bash
# Regenerates crates/bgtask-core/tests/corpus/*.txt: raw output of noisy
# tools, captured through a pseudo-terminal (`script`) so colours, `\r`
# progress bars and spinners are there as an agent's task would see them.
# The compaction tests (crates/bgtask-core/tests/compaction.rs) read these.
#
# Needs: script (util-linux), cargo, python3 (venv), npm, curl, and the
# package registries. Takes a minute or two. Paths and host names (every
# URL host and every dotted name ending in .io, .org or .com) are scrubbed
# from the captures, so the committed files name no registry.
#
# Usage: scripts/make-corpus.sh [sample...]   (default: every sample)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/crates/bgtask-core/tests/corpus"
max_bytes=$((1000 * 1000))
mkdir -p "$out"

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

export TERM=xterm-256color
export LC_ALL=C.UTF-8

# capture NAME DIR CMD: runs CMD in DIR on a pseudo-terminal, 120 columns
# wide, and writes what the terminal received to the corpus. A non-zero exit
# is expected for some samples (a failing test is the point of them).
capture() {
    local name=$1 dir=$2 cmd=$3 raw="$work/$1.raw"
    echo "== $name: $cmd" >&2
    (cd "$dir" && script -qfec "stty cols 120 rows 40; $cmd" /dev/null) >"$raw" </dev/null || true
    scrub <"$raw" >"$out/$name.txt"
    local size
    size=$(wc -c <"$out/$name.txt")
    if ((size > max_bytes)); then
        echo "$name: $size bytes is over $max_bytes; make the sample smaller" >&2
        exit 1
    fi
    echo "   $size bytes" >&2
}

# Replaces the scratch dir, the home dir and host names, byte-safely.
scrub() {
    LC_ALL=C sed -E \
        -e "s#$work#<tmp>#g" \
        -e "s#$HOME#~#g" \
        -e 's#https?://[^/[:space:]"'"'"']+#<host>#g' \
        -e 's#\b([A-Za-z0-9-]+\.)+(io|org|com)\b#<host>#g'
}

sample_cargo_build() {
    local crate="$work/cargo-build"
    mkdir -p "$crate/src"
    cat >"$crate/Cargo.toml" <<'EOF'
[package]
name = "corpus-build"
version = "0.1.0"
edition = "2021"

[dependencies]
anyhow = "1"
itertools = "0.14"
rand = "0.9"
regex = "1"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
EOF
    # An unused variable and an unused import: real compiler warnings.
    cat >"$crate/src/main.rs" <<'EOF'
use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    let unused = 42;
    let re = regex::Regex::new(r"\d+")?;
    let n: u32 = rand::random();
    println!("{}", serde_json::json!({ "n": n, "m": re.is_match("7") }));
    Ok(())
}
EOF
    # A private CARGO_HOME so the index update and downloads happen too.
    capture cargo-build "$crate" \
        "CARGO_HOME=$work/cargo-home CARGO_TARGET_DIR=$work/cargo-target CARGO_TERM_PROGRESS_WHEN=always CARGO_TERM_PROGRESS_WIDTH=100 CARGO_TERM_COLOR=always cargo build -j2"
}

sample_cargo_test() {
    local crate="$work/cargo-test"
    mkdir -p "$crate/src"
    cat >"$crate/Cargo.toml" <<'EOF'
[package]
name = "corpus-tests"
version = "0.1.0"
edition = "2021"
EOF
    {
        echo 'pub fn double(x: u64) -> u64 { x * 2 }'
        echo '#[cfg(test)]'
        echo 'mod tests {'
        echo '    use super::*;'
        for i in $(seq 1 400); do
            echo "    #[test] fn doubles_case_$i() { assert_eq!(double($i), $((i * 2))); }"
        done
        echo '    #[test] fn doubles_overflowing_input() { assert_eq!(double(7), 15, "double(7) is wrong"); }'
        echo '}'
    } >"$crate/src/lib.rs"
    capture cargo-test "$crate" \
        "CARGO_TARGET_DIR=$work/cargo-target CARGO_TERM_PROGRESS_WHEN=always CARGO_TERM_PROGRESS_WIDTH=100 CARGO_TERM_COLOR=always RUST_BACKTRACE=1 cargo test -j2 -- --test-threads=2"
}

sample_pip_install() {
    python3 -m venv "$work/venv"
    # No local wheels and no cache, so every package is downloaded with a bar.
    capture pip-install "$work" \
        "PIP_FIND_LINKS= $work/venv/bin/pip install --no-cache-dir --progress-bar on numpy pandas requests rich pytest"
}

sample_pytest() {
    local dir="$work/pytest"
    mkdir -p "$dir"
    [[ -x $work/venv/bin/pytest ]] || sample_pip_install
    cat >"$dir/test_sample.py" <<'EOF'
import pytest


def parse_size(text):
    number, unit = text.split()
    return int(number) * {"B": 1, "KB": 1000, "MB": 1000**2}[unit]


@pytest.mark.parametrize("n", range(300))
def test_parse_bytes(n):
    assert parse_size(f"{n} B") == n


def test_parse_kibibytes():
    assert parse_size("2 KiB") == 2048
EOF
    capture pytest "$dir" "$work/venv/bin/pytest -v --color=yes -p no:cacheprovider test_sample.py"
}

sample_npm_install() {
    local dir="$work/npm"
    mkdir -p "$dir"
    (cd "$dir" && npm init -y >/dev/null 2>&1)
    capture npm-install "$dir" \
        "npm install --cache=$work/npm-cache --progress=true --loglevel=http --color=always express lodash chalk typescript"
}

sample_curl() {
    local dir="$work/www"
    mkdir -p "$dir"
    head -c $((50 * 1000 * 1000)) /dev/zero >"$dir/big.bin"
    local port=18765
    python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
    server_pid=$!
    # Wait until the server answers (bounded), not for a fixed time.
    local tries=0
    until curl -s -o /dev/null "http://127.0.0.1:$port/"; do
        tries=$((tries + 1))
        ((tries < 100)) || { echo "http.server did not start" >&2; exit 1; }
        sleep 0.1
    done
    # The rate limit makes the meter update for a few seconds.
    capture curl-download "$dir" "curl --limit-rate 5M -o /dev/null http://127.0.0.1:$port/big.bin"
    kill "$server_pid"
    server_pid=
}

samples=("$@")
if ((${#samples[@]} == 0)); then
    samples=(cargo-build cargo-test pip-install pytest npm-install curl)
fi
for sample in "${samples[@]}"; do
    "sample_${sample//-/_}"
done

if LC_ALL=C grep -lE 'https?://|\.(io|org|com)\b' "$out"/*.txt; then
    echo "a host name survived scrubbing in the files above" >&2
    exit 1
fi
du -b "$out"/*.txt >&2
