//! Fault injection: kill starters, servers and monitors at every moment,
//! fill the disk, corrupt the store, race many processes, jump the clock,
//! feed the servers hostile input, and check that no task or completion is
//! lost, duplicated or corrupted.
//!
//! Each test prints a `fault report:` line with its counts (see
//! docs/RELIABILITY.md). Set `BGTASK_SOAK=N` to repeat the randomised
//! faults N times more (the soak variant).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[path = "../cli/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod fixture;

#[path = "../shared/client.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared client")]
mod client;
mod crashes;
mod delivery;
mod disk;
mod handoff;
mod hostile;
mod identity;
mod notices;
mod prepared;
mod races;
mod store;

/// How many times randomised faults repeat (`BGTASK_SOAK` multiplies).
pub fn rounds(base: usize) -> usize {
    let soak: usize = std::env::var("BGTASK_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    base * soak.max(1)
}

/// A small deterministic random source (xorshift), seeded per test so a
/// failure can be replayed with `BGTASK_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("BGTASK_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        println!("seed: {seed} (replay with BGTASK_SEED={seed})");
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
