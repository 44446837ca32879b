//! Progress on long work: a bar on a terminal, plain lines (one per change) otherwise, so
//! logs and CI output stay readable.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Progress of one piece of work counted in items (replicas, pods).
pub struct Progress {
    bar: Option<ProgressBar>,
    last: String,
}

impl Progress {
    /// Starts progress towards `total`.
    pub fn new(total: u64) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress { bar, last: String::new() }
    }

    /// Reports `done` of the total with a message; off a terminal, a line when it changed.
    pub fn update(&mut self, done: u64, total: u64, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(message.to_owned());
            }
            None if message != self.last => {
                println!("{message}");
                let _ = std::io::stdout().flush();
                self.last = message.to_owned();
            }
            None => {}
        }
    }

    /// Ends the bar, leaving `message` on screen.
    pub fn finish(self, message: &str) {
        match self.bar {
            Some(bar) => {
                bar.finish_and_clear();
                println!("{message}");
            }
            None => println!("{message}"),
        }
    }

    /// Ends the bar without a message (the caller reports an error).
    pub fn abandon(self) {
        if let Some(bar) = self.bar {
            bar.abandon();
        }
    }
}
