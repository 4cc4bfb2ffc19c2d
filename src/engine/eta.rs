//! The whole build's time left, from the runs recorded so far: each stage to run is
//! expected to take what it took when it last ran here (`cache/log/runs.jsonl`); a stage
//! never run takes what its sibling variants took (recorded, or finished in this build),
//! else what stages took on average. The sum left, less what running stages have already
//! spent, is spread over the slots.

use std::collections::HashMap;
use std::time::Instant;

pub struct Eta {
    /// Stage id → seconds it took when it last ran, for every stage this build runs.
    expected: HashMap<String, Option<f64>>,
    /// Seconds of the runs known per stage (id without its `[variant]`).
    by_stage: HashMap<String, Vec<f64>>,
    running: HashMap<String, Instant>,
    done: usize,
    slots: usize,
    started: Instant,
}

fn stage_of(id: &str) -> &str {
    id.split_once('[').map_or(id, |(s, _)| s)
}

impl Eta {
    /// `to_run`: each stage the build is to run, with the seconds it took when last run;
    /// `recorded`: every recorded run (id, seconds), for the estimates of siblings.
    pub fn new(
        to_run: Vec<(String, Option<f64>)>,
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
        Eta {
            expected: to_run.into_iter().collect(),
            by_stage,
            running: HashMap::new(),
            done: 0,
            slots: slots.max(1),
            started: Instant::now(),
        }
    }

    pub fn total(&self) -> usize {
        self.done + self.expected.len()
    }

    pub fn done(&self) -> usize {
        self.done
    }

    pub fn start(&mut self, id: &str) {
        if self.expected.contains_key(id) {
            self.running.insert(id.to_string(), Instant::now());
        }
    }

    /// A stage ended; a built one's time teaches the estimate of its siblings.
    pub fn finish(&mut self, id: &str, built_seconds: Option<f64>) {
        if self.expected.remove(id).is_none() {
            return;
        }
        self.running.remove(id);
        self.done += 1;
        if let Some(s) = built_seconds {
            self.by_stage
                .entry(stage_of(id).to_string())
                .or_default()
                .push(s);
        }
    }

    fn guess(&self, id: &str) -> Option<f64> {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        if let Some(Some(s)) = self.expected.get(id) {
            return Some(*s);
        }
        self.by_stage.get(stage_of(id)).and_then(|v| mean(v))
    }

    /// Seconds left, spread over the slots, and how many stages to run have no time yet
    /// (left out of the sum).
    pub fn left(&self) -> (f64, usize) {
        let (mut sum, mut untimed) = (0.0, 0);
        for id in self.expected.keys() {
            let Some(mut s) = self.guess(id) else {
                untimed += 1;
                continue;
            };
            if let Some(t) = self.running.get(id) {
                s = (s - t.elapsed().as_secs_f64()).max(0.0);
            }
            sum += s;
        }
        let lanes = self.slots.min(self.expected.len()).max(1);
        (sum / lanes as f64, untimed)
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
            super::ui::clock(self.started.elapsed().as_secs_f64())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Eta;

    fn ids(list: &[(&str, Option<f64>)]) -> Vec<(String, Option<f64>)> {
        list.iter().map(|(i, s)| (i.to_string(), *s)).collect()
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
        assert_eq!(two.left(), (20.0, 0));
        assert_eq!(two.line(), "build   0/2 stages done, 0s elapsed, ~20s left");
        // Nothing timed: no time left said. A stage not in the build changes nothing.
        let mut none = Eta::new(ids(&[("a", None)]), &[], 1);
        assert_eq!(none.line(), "build   0/1 stages done, 0s elapsed");
        none.finish("z", Some(5.0));
        assert_eq!((none.done(), none.left()), (0, (0.0, 1)));
    }
}
