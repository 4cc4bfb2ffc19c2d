//! The whole build's time left, from the runs recorded so far: each stage to run is
//! expected to take what it took when it last ran here (`cache/log/runs.jsonl`); a stage
//! never run takes what its sibling variants took (recorded, or finished in this build).
//! A recorded time is the stage's own work; what a stage costs around it (starting a
//! process, laying out its inputs, storing its outputs) is learnt from the stages this
//! build has finished and added to each. Each stage holds the cores it was given while it
//! runs, so what is left is spread over the slots by core-seconds: trainings packed one
//! core each take one slot each; and nothing ends before its longest stage does.

use std::collections::HashMap;
use std::time::Instant;

pub struct Eta {
    /// Stage id → seconds it took when it last ran, and the cores it takes, for every
    /// stage this build runs.
    expected: HashMap<String, (Option<f64>, usize)>,
    /// Seconds of the runs known per stage (id without its `[variant]`).
    by_stage: HashMap<String, Vec<f64>>,
    /// Running stages, with when they started (seconds since `origin`).
    running: HashMap<String, f64>,
    /// Seconds each finished stage of this build took beyond its own recorded work, summed,
    /// and how many.
    overhead: (f64, usize),
    done: usize,
    slots: usize,
    origin: Instant,
}

fn stage_of(id: &str) -> &str {
    id.split_once('[').map_or(id, |(s, _)| s)
}

impl Eta {
    /// `to_run`: each stage the build is to run, with the seconds it took when last run and
    /// the cores it takes; `recorded`: every recorded run (id, seconds), for the estimates
    /// of siblings.
    pub fn new(
        to_run: Vec<(String, Option<f64>, usize)>,
        recorded: &[(String, f64)],
        slots: usize,
    ) -> Eta {
        let mut by_stage: HashMap<String, Vec<f64>> = HashMap::new();
        for (id, s) in recorded {
            by_stage
                .entry(stage_of(id).to_string())
                .or_default()
                .push(*s);
        }
        let slots = slots.max(1);
        Eta {
            expected: to_run
                .into_iter()
                .map(|(id, s, cpus)| (id, (s, cpus.clamp(1, slots))))
                .collect(),
            by_stage,
            running: HashMap::new(),
            overhead: (0.0, 0),
            done: 0,
            slots,
            origin: Instant::now(),
        }
    }

    pub fn total(&self) -> usize {
        self.done + self.expected.len()
    }

    pub fn done(&self) -> usize {
        self.done
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub fn start(&mut self, id: &str) {
        self.start_at(id, self.now());
    }

    fn start_at(&mut self, id: &str, now: f64) {
        if self.expected.contains_key(id) {
            self.running.insert(id.to_string(), now);
        }
    }

    /// A stage ended; a built one's time teaches the estimate of its siblings, and the
    /// wall time it took here beyond that, the cost around every stage.
    pub fn finish(&mut self, id: &str, built_seconds: Option<f64>) {
        self.finish_at(id, built_seconds, self.now());
    }

    fn finish_at(&mut self, id: &str, built_seconds: Option<f64>, now: f64) {
        if self.expected.remove(id).is_none() {
            return;
        }
        let began = self.running.remove(id);
        self.done += 1;
        if let Some(s) = built_seconds {
            self.by_stage
                .entry(stage_of(id).to_string())
                .or_default()
                .push(s);
            if let Some(t) = began {
                self.overhead.0 += (now - t - s).max(0.0);
                self.overhead.1 += 1;
            }
        }
    }

    /// The mean cost around a stage, from this build's finished stages.
    fn around(&self) -> f64 {
        match self.overhead {
            (_, 0) => 0.0,
            (sum, n) => sum / n as f64,
        }
    }

    fn guess(&self, id: &str) -> Option<f64> {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let work = match self.expected.get(id) {
            Some((Some(s), _)) => Some(*s),
            _ => self.by_stage.get(stage_of(id)).and_then(|v| mean(v)),
        };
        work.map(|w| w + self.around())
    }

    /// Seconds left, and how many stages to run have no time yet (left out of the sum):
    /// the core-seconds left spread over the slots, or the longest stage left if longer.
    pub fn left(&self) -> (f64, usize) {
        self.left_at(self.now())
    }

    fn left_at(&self, now: f64) -> (f64, usize) {
        let (mut core_seconds, mut longest, mut untimed) = (0.0, 0.0f64, 0);
        for (id, (_, cpus)) in &self.expected {
            let Some(mut s) = self.guess(id) else {
                untimed += 1;
                continue;
            };
            if let Some(t) = self.running.get(id) {
                s = (s - (now - t)).max(0.0);
            }
            core_seconds += s * *cpus as f64;
            longest = longest.max(s);
        }
        ((core_seconds / self.slots as f64).max(longest), untimed)
    }

    /// `build   12/40 stages done, 3m10s elapsed, ~25m00s left`; with stages not timed
    /// yet, `~25m00s+ left (3 stages without a time yet)`; nothing about time left while no
    /// stage has one.
    pub fn line(&self) -> String {
        let total = self.total();
        let (left, untimed) = self.left();
        let left = match untimed {
            _ if self.expected.is_empty() => String::new(),
            0 => format!(", ~{} left", super::ui::clock(left)),
            n if n == self.expected.len() => String::new(),
            n => format!(
                ", ~{}+ left ({n} stage{} without a time yet)",
                super::ui::clock(left),
                if n == 1 { "" } else { "s" }
            ),
        };
        format!(
            "build   {}/{total} stages done, {} elapsed{left}",
            self.done,
            super::ui::clock(self.now())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Eta;

    fn ids(list: &[(&str, Option<f64>)]) -> Vec<(String, Option<f64>, usize)> {
        list.iter().map(|(i, s)| (i.to_string(), *s, 1)).collect()
    }

    #[test]
    fn recorded_times_then_siblings_spread_over_the_slots() {
        let mut eta = Eta::new(
            ids(&[
                ("s:train", Some(100.0)),
                ("s:train[lr=0.1]", None),
                ("s:eval", None),
            ]),
            &[("s:train".into(), 100.0), ("s:train[lr=0.5]".into(), 60.0)],
            1,
        );
        // 100 + the siblings' mean (100 + 60) / 2; the evaluation has no time yet.
        assert_eq!(eta.left(), (180.0, 1));
        assert_eq!(
            eta.line(),
            "build   0/3 stages done, 0s elapsed, ~3m00s+ left (1 stage without a time yet)"
        );
        eta.finish("s:eval", Some(2.0));
        assert_eq!(eta.left(), (180.0, 0));
        eta.finish("s:train", Some(120.0));
        assert_eq!((eta.done(), eta.total()), (2, 3));
        let m = (100.0 + 60.0 + 120.0) / 3.0;
        assert!((eta.left().0 - m).abs() < 1e-9);
        eta.finish("s:train[lr=0.1]", Some(1.0));
        assert_eq!(eta.line(), "build   3/3 stages done, 0s elapsed");
        let two = Eta::new(ids(&[("a", Some(10.0)), ("b", Some(30.0))]), &[], 2);
        // 40 core-seconds over 2 slots, but nothing ends before the 30 s stage.
        assert_eq!(two.left(), (30.0, 0));
        assert_eq!(two.line(), "build   0/2 stages done, 0s elapsed, ~30s left");
        let packed = Eta::new(
            ids(&[("a", Some(10.0)), ("b", Some(10.0)), ("c", Some(10.0))]),
            &[],
            2,
        );
        assert_eq!(packed.left(), (15.0, 0));
        // Nothing timed: no time left said. A stage not in the build changes nothing.
        let mut none = Eta::new(ids(&[("a", None)]), &[], 1);
        assert_eq!(none.line(), "build   0/1 stages done, 0s elapsed");
        none.finish("z", Some(5.0));
        assert_eq!((none.done(), none.left()), (0, (0.0, 1)));
    }

    /// Replays a build on `slots` cores as the scheduler runs it (a stage starts the moment
    /// enough cores are free, in order) with `around` seconds of cost per stage that no
    /// record holds, and checks the estimate a tenth of the way through against the time
    /// the replay still took: within 25%.
    fn replay(stages: &[(f64, usize)], slots: usize, around: f64) {
        let to_run: Vec<(String, Option<f64>, usize)> = stages
            .iter()
            .enumerate()
            .map(|(i, (s, c))| (format!("s:t[{i}]"), Some(*s), *c))
            .collect();
        let mut eta = Eta::new(to_run, &[], slots);
        // Event replay: (end time, stage, cores) of the running ones; as the scheduler
        // does, a stage that does not fit waits and the next that fits starts.
        let (mut free, mut now) = (slots, 0.0f64);
        let mut waiting: Vec<usize> = (0..stages.len()).collect();
        let mut running: Vec<(f64, usize, usize)> = Vec::new();
        let mut checked = None;
        while !waiting.is_empty() || !running.is_empty() {
            waiting.retain(|&i| {
                let cores = stages[i].1.min(slots);
                if cores > free {
                    return true;
                }
                free -= cores;
                eta.start_at(&format!("s:t[{i}]"), now);
                running.push((now + stages[i].0 + around, i, cores));
                false
            });
            running.sort_by(|a, b| b.0.total_cmp(&a.0));
            let (end, i, cores) = running.pop().expect("something runs");
            now = end;
            free += cores;
            eta.finish_at(&format!("s:t[{i}]"), Some(stages[i].0), now);
            if checked.is_none() && eta.done() * 10 >= stages.len() {
                checked = Some((now, eta.left_at(now).0));
            }
        }
        let (at, said) = checked.expect("a tenth was reached");
        let took = now - at;
        assert!(
            (said - took).abs() <= 0.25 * took,
            "said ~{said:.2}s left at {at:.2}s, took {took:.2}s"
        );
    }

    #[test]
    fn the_time_left_counts_the_cost_around_stages_and_the_packing() {
        // 500 one-epoch linear models on 2 cores (docs/BENCHMARKS.md, "Per-stage cost"):
        // 30 ms trainings and 8 ms evaluations, one core each, 12 ms around each stage.
        let mut study = Vec::new();
        for _ in 0..500 {
            study.push((0.030, 1));
            study.push((0.008, 1));
        }
        replay(&study, 2, 0.012);
        // 20 trainings of 20 to 115 s, one core each, packed on 2 cores; then on 4 with
        // some taking 2.
        let trainings: Vec<(f64, usize)> = (0..20).map(|i| (20.0 + 5.0 * i as f64, 1)).collect();
        replay(&trainings, 2, 0.1);
        let mixed: Vec<(f64, usize)> = (0..20)
            .map(|i| (20.0 + 5.0 * i as f64, 1 + i % 2))
            .collect();
        replay(&mixed, 4, 0.1);
    }
}
