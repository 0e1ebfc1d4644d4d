#!/usr/bin/env python3
"""Queue hand-off latency (issue 21), two ways, for one or two bgtask binaries.

    sudo python3 scripts/handoff.py BGTASK [--baseline OLD] [--tasks N] [--rounds R]

One task holds a group with parallel 1 (it reads a fifo); N tasks are queued
behind it; the fifo is opened and every task runs in turn while one `bgtask wait`
waits for all of them (as a person would). Each task is
`bash -c 'echo $EPOCHREALTIME > s$i; echo $EPOCHREALTIME > e$i'`.

- kernel: from the exit of one task's process (the `sched_process_exit`
  tracepoint) to the exec of the next one's (`sched_process_exec`): the
  hand-off itself, one task's end to the next one's start.
- stamps: from one task's last act to the next one's first (bash's clock
  in the tasks): the above plus bash's own exit and start-up.

The tracepoints are read through a tracefs instance of this script's own
(removed at the end), so it needs root. With --baseline, rounds alternate
OLD and BGTASK, so both see the same machine in the same minutes.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

TRACEFS = "/sys/kernel/tracing"
EVENT = re.compile(r"\s(\d+\.\d+): (sched_process_exec|sched_process_exit): .*?pid=(\d+)")


class Trace:
    """A tracefs instance recording process execs and exits."""

    def __init__(self):
        self.dir = os.path.join(TRACEFS, "instances", f"bgtask-handoff-{os.getpid()}")
        os.mkdir(self.dir)
        for event in ("sched_process_exec", "sched_process_exit"):
            with open(os.path.join(self.dir, "events", "sched", event, "enable"), "w") as f:
                f.write("1")
        with open(os.path.join(self.dir, "buffer_size_kb"), "w") as f:
            f.write("8192")

    def clear(self):
        with open(os.path.join(self.dir, "trace"), "w") as f:
            f.write("")

    def events(self):
        """{(event, pid): first timestamp in seconds}."""
        seen = {}
        with open(os.path.join(self.dir, "trace")) as f:
            for line in f:
                m = EVENT.search(line)
                if m:
                    seen.setdefault((m.group(2), int(m.group(3))), float(m.group(1)))
        return seen

    def close(self):
        for event in ("sched_process_exec", "sched_process_exit"):
            with open(os.path.join(self.dir, "events", "sched", event, "enable"), "w") as f:
                f.write("0")
        os.rmdir(self.dir)


def run(bgtask, env, *args):
    done = subprocess.run([bgtask, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def one_round(bgtask, tasks, trace):
    """Kernel and stamp hand-offs (ms) of one round."""
    work = tempfile.mkdtemp(prefix="bgtask-handoff-")
    try:
        env = dict(os.environ, BGTASK_HOME=os.path.join(work, "home"))
        fifo = os.path.join(work, "fifo")
        os.mkfifo(fifo)
        st = os.path.join(work, "st")
        os.mkdir(st)
        run(bgtask, env, "group", "add", "one", "--parallel", "1")
        ids = [run(bgtask, env, "run", "--group", "one", "--no-notify", "--",
                   f"cat {fifo} >/dev/null; echo $EPOCHREALTIME > {st}/e0")]
        for i in range(1, tasks + 1):
            ids.append(run(bgtask, env, "run", "--group", "one", "--no-notify", "--",
                           f"echo $EPOCHREALTIME > {st}/s{i}; echo $EPOCHREALTIME > {st}/e{i}"))
        trace.clear()
        with open(fifo, "w") as f:
            f.write("go\n")
        run(bgtask, env, "wait", "--timeout", "10m", *ids)
        events = trace.events()
        pids = [json.loads(run(bgtask, env, "status", "--json", i))["pid"] for i in ids]
        kernel, stamps = [], []
        for i in range(1, tasks + 1):
            exited = events.get(("sched_process_exit", pids[i - 1]))
            started = events.get(("sched_process_exec", pids[i]))
            if exited is not None and started is not None:
                kernel.append((started - exited) * 1000)
            with open(f"{st}/s{i}") as s, open(f"{st}/e{i - 1}") as e:
                stamps.append((float(s.read()) - float(e.read())) * 1000)
        return kernel, stamps
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(values):
    values = sorted(values)
    if not values:
        return "no samples"
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return f"p50 {statistics.median(values):6.2f} ms  p90 {q(0.9):6.2f} ms  p99 {q(0.99):6.2f} ms  (n={len(values)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bgtask")
    parser.add_argument("--baseline")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binaries = [("new", os.path.abspath(args.bgtask))]
    if args.baseline:
        binaries.insert(0, ("old", os.path.abspath(args.baseline)))
    results = {name: ([], []) for name, _ in binaries}
    trace = Trace()
    try:
        for _ in range(args.rounds):
            for name, exe in binaries:
                kernel, stamps = one_round(exe, args.tasks, trace)
                results[name][0].extend(kernel)
                results[name][1].extend(stamps)
    finally:
        trace.close()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"hand-off, {args.rounds} rounds of {args.tasks} tasks, load average {load}")
    for name, exe in binaries:
        kernel, stamps = results[name]
        print(f"{name} ({exe})")
        print(f"  kernel: exit -> next exec      {summary(kernel)}")
        print(f"  stamps: last act -> first act  {summary(stamps)}")


if __name__ == "__main__":
    sys.exit(main())
