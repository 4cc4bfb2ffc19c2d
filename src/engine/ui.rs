//! What a build shows while it runs: a live line per running stage on a terminal, plain
//! lines otherwise. A stage's log is printed in one piece when it ends, so parallel stages
//! never interleave.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::eta::Eta;
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
    /// `--quiet`: failures only (the caller prints the summary).
    quiet: bool,
    out: Mutex<()>,
    /// The whole build's progress and time left, once the build says what it will run.
    eta: Mutex<Option<Whole>>,
}

/// The build's line: a bar on a terminal, else a line at most every [`LINES_EVERY`].
struct Whole {
    eta: Eta,
    bar: Option<ProgressBar>,
    printed: Option<Instant>,
}

impl Console {
    pub fn new(verbose: bool) -> Console {
        Self::with(verbose, false)
    }

    pub fn with(verbose: bool, quiet: bool) -> Console {
        let live = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bars = live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Console {
            bars,
            verbose,
            quiet,
            out: Mutex::new(()),
            eta: Mutex::new(None),
        }
    }

    /// What the build will run, for its progress line and time left.
    pub fn expect(&self, eta: Eta) {
        if self.quiet || eta.total() == 0 {
            return;
        }
        let bar = self.bars.as_ref().map(|mp| {
            let bar = mp.insert(0, ProgressBar::new(eta.total() as u64));
            bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
            bar.set_message(eta.line());
            bar
        });
        *self.eta.lock().unwrap() = Some(Whole {
            eta,
            bar,
            printed: None,
        });
    }

    fn whole_started(&self, stage: &str) {
        if let Some(w) = self.eta.lock().unwrap().as_mut() {
            w.eta.start(stage);
        }
    }

    fn whole_finished(&self, stage: &str, outcome: &Outcome) {
        let mut guard = self.eta.lock().unwrap();
        let Some(w) = guard.as_mut() else { return };
        let before = w.eta.done();
        let built = match outcome {
            Outcome::Built { ms } => Some(*ms as f64 / 1000.0),
            _ => None,
        };
        w.eta.finish(stage, built);
        if w.eta.done() == before {
            return;
        }
        if let Some(bar) = &w.bar {
            bar.set_message(w.eta.line());
            if w.eta.done() == w.eta.total() {
                bar.finish_and_clear();
            }
            return;
        }
        let every = lines_every();
        let last = w.eta.done() == w.eta.total();
        if last || w.printed.is_none_or(|t| t.elapsed() >= every) {
            w.printed = Some(Instant::now());
            let line = w.eta.line();
            drop(guard);
            self.print(&line);
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

/// Progress off a terminal (a log file, CI): a plain line per running stage every
/// [`LINES_EVERY`] (and at its last step, when it printed before), with the stage's elapsed time and an estimate of
/// what is left, so a log shows that a long training is alive and how far it is.
struct Lines {
    stage: String,
    started: Instant,
    last: Mutex<Option<Instant>>,
}

/// How often a running stage prints its progress off a terminal; `PIPE_PROGRESS_SECONDS`
/// sets it (0: every step).
const LINES_EVERY: Duration = Duration::from_secs(10);

impl Lines {
    fn new(stage: &str) -> Lines {
        Lines {
            stage: stage.to_string(),
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }
}

impl Progress for Lines {
    fn set(&self, done: u64, total: u64, message: &str) {
        if total == 0 || done == 0 {
            return;
        }
        let every = lines_every();
        // A stage shorter than `every` says nothing; a longer one, every `every` and its end.
        let mut last = self.last.lock().unwrap();
        let due = last.unwrap_or(self.started).elapsed() >= every;
        if !(due || (done == total && last.is_some())) {
            return;
        }
        *last = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = elapsed / done as f64 * total.saturating_sub(done) as f64;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "  ...   {} {done}/{total} {message} [{} elapsed, ~{} left]",
            self.stage,
            clock(elapsed),
            clock(left)
        );
        let _ = out.flush();
    }
}

fn lines_every() -> Duration {
    std::env::var("PIPE_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(LINES_EVERY, Duration::from_secs)
}

/// `42s`, `3m05s`, `2h07m`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Progress nobody sees: a quiet build, or a stage in a Slurm job.
pub struct Silent;
impl Progress for Silent {
    fn set(&self, _: u64, _: u64, _: &str) {}
}

impl Ui for Console {
    fn start(&self, stage: &str) -> Box<dyn Progress> {
        self.whole_started(stage);
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
            None if self.quiet => Box::new(Silent),
            None => {
                if self.verbose {
                    self.print(&format!("start   {stage}"));
                }
                Box::new(Lines::new(stage))
            }
        }
    }

    fn finish(&self, stage: &str, outcome: &Outcome, log: &str) {
        let hit_hidden = matches!(outcome, Outcome::Fresh) && !self.verbose;
        let quiet_hidden = self.quiet && !matches!(outcome, Outcome::Failed(_));
        if !hit_hidden && !quiet_hidden {
            self.print(&with_log(outcome_line(stage, outcome), log));
        }
        self.whole_finished(stage, outcome);
    }

    fn note(&self, message: &str) {
        self.print(message);
    }
}
