//! What a build shows while it runs: a live line per running stage on a terminal, plain
//! lines otherwise. A stage's log is printed in one piece when it ends, so parallel stages
//! never interleave.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::outcome::Outcome;
use crate::stage::Progress;

pub trait Ui: Sync {
    fn start(&self, stage: &str) -> Box<dyn Progress>;
    fn finish(&self, stage: &str, outcome: &Outcome, log: &str);
    fn note(&self, message: &str);
}

/// One line for an ended stage, e.g. `built   momentum:linear (1.2s)`.
pub fn outcome_line(stage: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Fresh => format!("fresh   {stage}"),
        Outcome::Built { ms } => format!("built   {stage} ({:.1}s)", *ms as f64 / 1000.0),
        Outcome::Failed(why) => format!("FAILED  {stage}: {why}"),
        Outcome::Skipped(why) => format!("skipped {stage}: {why}"),
    }
}

fn with_log(mut line: String, log: &str) -> String {
    for l in log.lines() {
        line.push_str("\n    ");
        line.push_str(l);
    }
    line
}

pub struct Console {
    bars: Option<MultiProgress>,
    /// Hits are many and dull: shown only with `--verbose`.
    verbose: bool,
    out: Mutex<()>,
}

impl Console {
    pub fn new(verbose: bool) -> Console {
        let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bars = live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Console {
            bars,
            verbose,
            out: Mutex::new(()),
        }
    }

    fn print(&self, text: &str) {
        match &self.bars {
            Some(mp) => {
                let _ = mp.println(text);
            }
            None => {
                let _guard = self.out.lock().unwrap();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set(&self, done: u64, total: u64, message: &str) {
        self.restyle(
            total,
            "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
        );
        self.0.set_position(done);
        self.0.set_message(message.to_string());
    }
    fn set_bytes(&self, done: u64, total: u64, message: &str) {
        self.restyle(
            total,
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        );
        self.0.set_position(done);
        self.0.set_message(message.to_string());
    }
}

impl Bar {
    fn restyle(&self, total: u64, template: &str) {
        if self.0.length() != Some(total) {
            self.0.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            self.0.set_length(total);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Progress nobody sees: a stage off a terminal, or in a Slurm job.
pub struct Silent;
impl Progress for Silent {
    fn set(&self, _: u64, _: u64, _: &str) {}
}

impl Ui for Console {
    fn start(&self, stage: &str) -> Box<dyn Progress> {
        match &self.bars {
            Some(mp) => {
                let bar = mp.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_prefix(stage.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                Box::new(Bar(bar))
            }
            None => {
                if self.verbose {
                    self.print(&format!("start   {stage}"));
                }
                Box::new(Silent)
            }
        }
    }

    fn finish(&self, stage: &str, outcome: &Outcome, log: &str) {
        if matches!(outcome, Outcome::Fresh) && !self.verbose {
            return;
        }
        self.print(&with_log(outcome_line(stage, outcome), log));
    }

    fn note(&self, message: &str) {
        self.print(message);
    }
}
