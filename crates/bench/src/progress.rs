//! The progress display: one status line on stderr, redrawn in place on a terminal, printed
//! every few seconds otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prints status lines for the scenario that runs.
pub struct Progress {
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    /// A display on stderr.
    pub fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), last: Mutex::new(None) }
    }

    /// Shows `text` as the current status (throttled to one line per 5 s off a terminal).
    pub fn status(&self, text: impl AsRef<str>) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}", text.as_ref());
            let _ = err.flush();
        } else if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            let _ = writeln!(err, "  … {}", text.as_ref());
            *last = Some(Instant::now());
        }
    }

    /// Prints `text` as a line of its own (a step done, a result).
    pub fn step(&self, text: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{}", text.as_ref());
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}
