//! Per-blob progress bars (`indicatif`), shown only when stdout is a
//! terminal; otherwise every call is a no-op.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;

/// A set of bars, one per blob.
pub struct Progress(Option<MultiProgress>);

/// One blob's bar (hidden when progress is off).
pub struct Bar(ProgressBar);

impl Progress {
    /// Bars on stdout if it is a terminal and `enabled`.
    pub fn new(enabled: bool) -> Progress {
        if enabled && std::io::stdout().is_terminal() {
            Progress(Some(MultiProgress::with_draw_target(
                ProgressDrawTarget::stdout(),
            )))
        } else {
            Progress(None)
        }
    }

    /// A bar for blob `d` of `size` bytes, labelled `verb`.
    pub fn bar(&self, d: &Digest, size: u64, verb: &str) -> Bar {
        let Some(m) = &self.0 else {
            return Bar(ProgressBar::hidden());
        };
        let b = m.add(ProgressBar::new(size));
        b.set_style(
            ProgressStyle::with_template("{prefix} {msg:12} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(d.short().to_string());
        b.set_message(verb.to_string());
        Bar(b)
    }
}

impl Bar {
    /// Adds `n` bytes.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Changes the bar's word.
    pub fn set(&self, word: &str) {
        self.0.set_message(word.to_string());
    }

    /// Ends the bar with a final word.
    pub fn done(&self, word: &str) {
        self.0.set_message(word.to_string());
        if let Some(len) = self.0.length() {
            self.0.set_position(len);
        }
        self.0.abandon();
    }
}
