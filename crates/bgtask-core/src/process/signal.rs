//! Signals by meaning, not by number. Everything outside `process/` names
//! a signal with [`Signal`]; the platform maps it to its own numbers, and
//! back when a child died of one. The stored name (`SIGTERM`) and the shell
//! convention for the exit code of a process ended by a signal (128 + its
//! number) are defined here, once.

use std::fmt;

/// A signal, platform-neutral. The named ones are those bgtask sends or
/// that commonly end a task; any other that ends a task is kept by its
/// number in [`Signal::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Ill,
    Trap,
    Abrt,
    Bus,
    Fpe,
    Kill,
    Usr1,
    Segv,
    Usr2,
    Pipe,
    Alrm,
    Term,
    Xcpu,
    Xfsz,
    /// A signal without a name here, by this platform's number.
    Other(i32),
}

/// Every named signal with this platform's number and its stored name.
const TABLE: [(Signal, i32, &str); 17] = [
    (Signal::Hup, libc::SIGHUP, "SIGHUP"),
    (Signal::Int, libc::SIGINT, "SIGINT"),
    (Signal::Quit, libc::SIGQUIT, "SIGQUIT"),
    (Signal::Ill, libc::SIGILL, "SIGILL"),
    (Signal::Trap, libc::SIGTRAP, "SIGTRAP"),
    (Signal::Abrt, libc::SIGABRT, "SIGABRT"),
    (Signal::Bus, libc::SIGBUS, "SIGBUS"),
    (Signal::Fpe, libc::SIGFPE, "SIGFPE"),
    (Signal::Kill, libc::SIGKILL, "SIGKILL"),
    (Signal::Usr1, libc::SIGUSR1, "SIGUSR1"),
    (Signal::Segv, libc::SIGSEGV, "SIGSEGV"),
    (Signal::Usr2, libc::SIGUSR2, "SIGUSR2"),
    (Signal::Pipe, libc::SIGPIPE, "SIGPIPE"),
    (Signal::Alrm, libc::SIGALRM, "SIGALRM"),
    (Signal::Term, libc::SIGTERM, "SIGTERM"),
    (Signal::Xcpu, libc::SIGXCPU, "SIGXCPU"),
    (Signal::Xfsz, libc::SIGXFSZ, "SIGXFSZ"),
];

impl Signal {
    /// The signal this platform numbers `number`.
    pub fn from_number(number: i32) -> Signal {
        TABLE
            .iter()
            .find(|(_, n, _)| *n == number)
            .map_or(Signal::Other(number), |(s, _, _)| *s)
    }

    /// This platform's number for the signal (only `process/` needs it).
    pub(super) fn number(self) -> i32 {
        match self {
            Signal::Other(n) => n,
            named => TABLE
                .iter()
                .find(|(s, _, _)| *s == named)
                .map_or(0, |(_, n, _)| *n),
        }
    }

    /// The conventional name, as stored in task records: `SIGKILL`, or
    /// `SIG<n>` for a signal without a name here.
    pub fn name(self) -> String {
        match TABLE.iter().find(|(s, _, _)| *s == self) {
            Some((_, _, name)) => (*name).to_owned(),
            None => format!("SIG{}", self.number()),
        }
    }

    /// SIGCONT: the one signal that undoes a stop.
    pub fn is_continue(self) -> bool {
        self.number() == libc::SIGCONT
    }

    /// The exit code a shell reports for a process this signal ended:
    /// 128 + its number.
    pub fn exit_code(self) -> i32 {
        128 + self.number()
    }
}

/// Signals a person may send by name that bgtask keeps by number.
const OTHER_NAMES: [(&str, i32); 7] = [
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("WINCH", libc::SIGWINCH),
    ("URG", libc::SIGURG),
];

impl Signal {
    /// A signal as a person names it: `INT`, `SIGINT`, `int` or its
    /// number (`15`). `None` for anything else.
    pub fn parse(text: &str) -> Option<Signal> {
        let upper = text.trim().to_ascii_uppercase();
        // `SIG18` is how a signal without a name here is stored.
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Ok(number) = bare.parse::<i32>() {
            // 1..=64: the kernel's signals (SIGRTMAX is 64 on Linux).
            return (1..=64)
                .contains(&number)
                .then(|| Signal::from_number(number));
        }
        TABLE
            .iter()
            .find(|(_, _, name)| &name[3..] == bare)
            .map(|(s, _, _)| *s)
            .or_else(|| {
                OTHER_NAMES
                    .iter()
                    .find(|(name, _)| *name == bare)
                    .map(|(_, n)| Signal::from_number(*n))
            })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_codes_are_the_stored_ones() {
        assert_eq!(Signal::Term.name(), "SIGTERM");
        assert_eq!(Signal::Kill.name(), "SIGKILL");
        assert_eq!(Signal::Kill.exit_code(), 137);
        assert_eq!(Signal::Term.exit_code(), 143);
        assert_eq!(Signal::Other(40).name(), "SIG40");
        assert_eq!(Signal::Other(40).exit_code(), 168);
        for (signal, number, _) in TABLE {
            assert_eq!(Signal::from_number(number), signal);
            assert_eq!(signal.number(), number);
        }
        assert_eq!(Signal::from_number(40), Signal::Other(40));
    }

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(Signal::parse("INT"), Some(Signal::Int));
        assert_eq!(Signal::parse("sigusr1"), Some(Signal::Usr1));
        assert_eq!(Signal::parse("15"), Some(Signal::Term));
        assert_eq!(Signal::parse("WINCH"), Some(Signal::Other(libc::SIGWINCH)));
        assert_eq!(Signal::parse("0"), None);
        // A stored name parses back to its signal.
        let cont = Signal::parse("CONT").unwrap();
        assert_eq!(Signal::parse(&cont.name()), Some(cont));
        assert_eq!(Signal::parse("65"), None);
        assert_eq!(Signal::parse("NOPE"), None);
    }
}
