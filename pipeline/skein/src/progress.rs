//! Progress of the CLI's long jobs (`replay`, `dependencies rebuild`): a
//! bar on a terminal, a plain line every few seconds elsewhere (logs, CI).
//!
//! In: each job's progress as done/total units, a message and the elapsed
//! time. Out: the bar or lines on stdout.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain progress lines are printed when stdout is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// `n noun`, with the noun in the plural unless `n` is 1.
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A progress bar on a terminal, plain lines elsewhere.
pub struct Display {
    /// What the job is called in plain lines (`replay`, `rebuild`).
    job: &'static str,
    /// What it counts (`messages`, `chunks`).
    unit: &'static str,
    terminal: bool,
    bar: Option<ProgressBar>,
    last_line: Option<Duration>,
    elapsed: Duration,
}

impl Display {
    /// A display for `job` counting `unit`s; a bar when `terminal`.
    pub fn new(job: &'static str, unit: &'static str, terminal: bool) -> Self {
        Self {
            job,
            unit,
            terminal,
            bar: None,
            last_line: None,
            elapsed: Duration::ZERO,
        }
    }

    /// Shows `done` of `total` units and `message`, `elapsed` into the job.
    pub fn show(&mut self, done: u64, total: u64, message: String, elapsed: Duration) {
        self.elapsed = elapsed;
        if total == 0 {
            return; // nothing to do: the job's summary says so
        }
        if !self.terminal {
            let due = done == total
                || self
                    .last_line
                    .is_none_or(|last| elapsed >= last + LINE_EVERY);
            if due {
                println!("{}: {done}/{total} {}, {message}", self.job, self.unit);
                self.last_line = Some(elapsed);
            }
            return;
        }
        let unit = self.unit;
        let new = self.bar.is_none();
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] [{{wide_bar}}] {{pos}}/{{len}} {unit}, {{msg}} (eta {{eta}})"
            ))
            .expect("valid template")
            .progress_chars("=> ");
            bar.with_style(style)
        });
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(message);
        if new {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// Leaves the bar at its last state; returns the job's last elapsed time.
    pub fn finish(&mut self) -> Duration {
        if let Some(bar) = self.bar.take() {
            bar.finish();
            println!(); // the bar leaves the cursor at the end of its line
        }
        self.elapsed
    }
}
