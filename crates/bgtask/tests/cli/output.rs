//! Output: separate streams, bounded reads, the on-disk cap, following.

use crate::fixture::*;

#[test]
fn logs_reads_streams_heads_and_tails() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "echo out1; echo err1 >&2; echo out2");
    bg.wait(&id);
    assert_eq!(
        bg.run(&["logs", "--stream", "stdout", &id]).ok().stdout,
        "out1\nout2\n"
    );
    assert_eq!(
        bg.run(&["logs", "--stream", "stderr", &id]).ok().stdout,
        "err1\n"
    );
    assert_eq!(bg.run(&["logs", &id]).ok().stdout, "out1\nout2\nerr1\n");
    assert_eq!(
        bg.run(&["logs", "--stream", "stdout", "--tail", "5", &id])
            .ok()
            .stdout,
        "out2\n"
    );
    assert_eq!(
        bg.run(&["logs", "--stream", "stdout", "--head", "4", &id])
            .ok()
            .stdout,
        "out1"
    );
    let status = bg
        .run(&["status", "--json", "--tail", "5", &id])
        .ok()
        .json();
    assert_eq!(status["output_truncated"], true);
    let full = bg.status(&id);
    assert_eq!(full["output_tail"], "out1\nout2\nerr1\n");
    assert_eq!(full["output_truncated"], false);
}

#[test]
fn tails_never_split_a_character() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "printf 'ééééé€€€𝄞𝄞'");
    bg.wait(&id);
    for tail in 1..=30 {
        let status = bg
            .run(&["status", "--json", "--tail", &tail.to_string(), &id])
            .ok()
            .json();
        let text = status["output_tail"].as_str().unwrap();
        assert!(text.len() <= tail, "tail {tail} gave {} bytes", text.len());
        assert!(
            !text.contains('\u{fffd}'),
            "tail {tail} split a character: {text:?}"
        );
        assert!("ééééé€€€𝄞𝄞".ends_with(text));
    }
    let raw = bg.run(&["logs", "--tail", "3", &id]).ok();
    assert_eq!(
        raw.stdout, "",
        "3 bytes cannot hold the 4-byte last character"
    );
    let raw = bg.run(&["logs", "--tail", "9", &id]).ok();
    assert_eq!(raw.stdout, "𝄞𝄞");
}

#[test]
fn a_runaway_writer_is_capped_on_disk_with_head_marker_and_tail() {
    let bg = Bg::new();
    let id = bg.spawn(
        &["--max-output", "64KiB"],
        "echo FIRST; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo LAST",
    );
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    let stdout_path = task["stdout_path"].as_str().unwrap();
    let size = std::fs::metadata(stdout_path).unwrap().len();
    assert!(
        size <= 32 * 1024,
        "stdout file is {size} bytes, over half of the 64KiB cap"
    );
    let dropped = task["output_dropped_bytes"].as_u64().unwrap();
    assert!(dropped > 4_900_000, "dropped {dropped}");
    let logs = bg.run(&["logs", "--stream", "stdout", &id]).ok().stdout;
    assert!(logs.starts_with("FIRST\n"));
    assert!(logs.ends_with("LAST\n"));
    assert!(logs.contains(&format!("[bgtask: {dropped} bytes of output dropped here]")));
    assert_eq!(
        logs.len() as u64 + dropped,
        6 + 5_000_001 + 5 + 64,
        "kept + dropped = written + marker"
    );
    let status = bg.status(&id);
    assert_eq!(status["output_truncated"], true);
    assert!(status["output_tail"].as_str().unwrap().ends_with("LAST\n"));
}

#[test]
fn follow_streams_output_until_the_task_ends() {
    let bg = Bg::new();
    let go = bg.gate("go");
    let id = bg.spawn(&[], &format!("echo one; {}; echo two", go.hold()));
    let mut follower = bg
        .cmd()
        .args(["logs", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follower.stdout.take().unwrap();
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"one\n", "output is streamed while the task runs");
    go.open();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "two\n");
    assert!(
        follower.wait().unwrap().success(),
        "follow exits when the task ends"
    );
}

/// Checks a followed copy of `seq 1 N` against the real stream: pieces of
/// it in order, each gap announced with exactly its size, ending at its end.
fn check_followed(followed: &str, stream: &str) -> Result<(), String> {
    let marker = "\n[bgtask: output was capped while following; ";
    let mut pos = 0;
    let mut rest = followed;
    loop {
        let (piece, after) = match rest.find(marker) {
            Some(i) => (&rest[..i], Some(&rest[i + marker.len()..])),
            None => (rest, None),
        };
        if !stream[pos..].starts_with(piece) {
            return Err(format!("followed bytes differ from the stream at {pos}"));
        }
        pos += piece.len();
        let Some(after) = after else { break };
        let (count, tail) = after
            .split_once(" bytes skipped]\n")
            .ok_or("marker unended")?;
        let skipped: usize = count.parse().map_err(|_| "not a count")?;
        if skipped == 0 {
            return Err(format!("a marker for nothing at {pos}"));
        }
        pos += skipped;
        rest = tail;
    }
    if pos != stream.len() {
        return Err(format!("follow ended at {pos} of {}", stream.len()));
    }
    Ok(())
}

#[test]
fn follow_of_a_fast_capped_writer_gets_everything_kept_and_counts_every_gap() {
    let bg = Bg::new();
    let stream: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    for round in 0..8 {
        let id = bg.run_id(
            bg.cmd()
                .args(["run", "--max-output", "64KiB", "--", "seq 1 200000"]),
        );
        let tail = if round % 2 == 0 {
            &[][..]
        } else {
            &["--tail", "1000"][..]
        };
        let followed = bg
            .run_with(bg.cmd().args(["logs", "--follow"]).args(tail).arg(&id))
            .ok();
        if round % 2 == 0 {
            check_followed(&followed.stdout, &stream).unwrap();
        } else {
            // From a tail: a suffix of the stream, with its gaps counted,
            // starting wherever its first piece (long enough to tell)
            // occurs in the stream.
            let first = followed.stdout.split("\n[bgtask:").next().unwrap();
            let first = &first[..first.len().min(64)];
            if first.len() >= 24 {
                let fits = stream
                    .match_indices(first)
                    .any(|(start, _)| check_followed(&followed.stdout, &stream[start..]).is_ok());
                assert!(fits, "round {round}: the followed tail is not the stream's");
            }
        }
        let logs = bg.run(&["logs", "--stream", "stdout", &id]).ok().stdout;
        assert!(logs.ends_with("199999\n200000\n"), "round {round}");
    }
}
