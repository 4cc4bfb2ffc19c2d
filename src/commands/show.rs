//! `pipe show [TARGET…]`: every evaluated variant (every seed) of the selected studies in
//! one table, read from what the cache holds — as `dvc exp show` does, without opening
//! `cache/entries/` by hand. `--by variant`: a variant's seeds in one row ([`super::show_by`]).

use std::cmp::Ordering;
use std::io::Write as _;
use std::process::ExitCode;

use super::results::{held, Gatherers, Row};
use super::{print_json, Error, Project};
use crate::cli::ShowArgs;

/// A column: its name (for `--sort` and csv), its header, and its cell.
struct Column {
    name: &'static str,
    header: &'static str,
    cell: fn(&Row) -> Cell,
    /// Larger is better: sorted high to low unless `:asc` is asked for.
    descending: bool,
}

pub(super) enum Cell {
    Text(String),
    Num(Option<f64>),
    Pct(Option<f64>),
    Int(Option<usize>),
}

impl Cell {
    fn show(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(Some(x)) => format!("{x:.2}"),
            Cell::Pct(Some(x)) => format!("{:.1}", x * 100.0),
            Cell::Int(Some(x)) => x.to_string(),
            _ => "-".into(),
        }
    }
    fn raw(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(Some(x)) | Cell::Pct(Some(x)) => x.to_string(),
            Cell::Int(Some(x)) => x.to_string(),
            _ => String::new(),
        }
    }
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Num(x) | Cell::Pct(x) => *x,
            Cell::Int(x) => x.map(|x| x as f64),
            Cell::Text(_) => None,
        }
    }
    fn cmp(&self, other: &Cell) -> Ordering {
        let num = Cell::number;
        match (self, other) {
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            _ => match (num(self), num(other)) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
        }
    }
}

const COLUMNS: &[Column] = &[
    Column {
        name: "study",
        header: "study",
        cell: |r| Cell::Text(r.study.clone()),
        descending: false,
    },
    Column {
        name: "variant",
        header: "variant",
        cell: |r| Cell::Text(r.variant.clone()),
        descending: false,
    },
    Column {
        name: "seed",
        header: "seed",
        cell: |r| Cell::Int(Some(r.seed as usize)),
        descending: false,
    },
    Column {
        name: "family",
        header: "family",
        cell: |r| Cell::Text(r.family.clone()),
        descending: false,
    },
    Column {
        name: "best_val_acc",
        header: "best val %",
        cell: |r| Cell::Pct(r.stats.best_val_acc),
        descending: true,
    },
    Column {
        name: "best_epoch",
        header: "@epoch",
        cell: |r| Cell::Int(r.stats.best_epoch),
        descending: false,
    },
    Column {
        name: "test_acc",
        header: "test % (final)",
        cell: |r| Cell::Pct(Some(r.stats.test_acc_final)),
        descending: true,
    },
    Column {
        name: "test_acc_best",
        header: "test % (best weights)",
        cell: |r| Cell::Pct(Some(r.stats.test_acc_best)),
        descending: true,
    },
    Column {
        name: "gap",
        header: "train-val gap (pts)",
        cell: |r| Cell::Pct(r.stats.gap),
        descending: false,
    },
    Column {
        name: "epochs_to_90",
        header: "epochs to 90% of best",
        cell: |r| Cell::Int(r.stats.epochs_to_90),
        descending: false,
    },
    Column {
        name: "status",
        header: "status",
        cell: |r| Cell::Text(r.status()),
        descending: false,
    },
    Column {
        name: "seconds_per_epoch",
        header: "s/epoch",
        cell: |r| Cell::Num(Some(r.stats.seconds_per_epoch)),
        descending: false,
    },
    Column {
        name: "backend",
        header: "backend",
        cell: |r| Cell::Text(r.backend.clone()),
        descending: false,
    },
];

/// The names `--sort` takes.
pub fn sort_columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|c| c.name)
}

pub(super) fn run(p: &Project, a: &ShowArgs) -> Result<ExitCode, Error> {
    if !a.targets.is_empty() {
        let named = p.plan.select(&a.targets).map_err(Error::Usage)?;
        if named
            .iter()
            .all(|&n| p.plan.def(n).kind.name() == "conclusions")
        {
            return conclusions(p, &named, &a.format);
        }
    }
    let gatherers = Gatherers::of(p);
    // `--study`: a study's name or a stage id holds the text.
    let in_study = |study: &str, stage: &str| {
        a.study
            .as_ref()
            .is_none_or(|s| study.contains(s.as_str()) || stage.contains(s.as_str()))
    };
    let nodes = evaluations(p, &gatherers, &a.targets)?;
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    let mut rows = Vec::new();
    let mut missing = 0;
    let mut left_out = 0;
    for (n, h) in held(p, &cache, &nodes) {
        let Some(h) = h else {
            // Counted under the study filter (a family is known once built).
            if in_study(&gatherers.study(p, n), &p.plan.nodes[n].id) {
                missing += 1;
            }
            continue;
        };
        match Row::read(p, &gatherers, &cache, n, &h) {
            Ok(r) => rows.push(r),
            Err(e) => {
                left_out += 1;
                eprintln!("warning: {}: left out: {e}", p.plan.nodes[n].id)
            }
        }
    }
    let unfiltered: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.family.clone(), r.study.clone()))
        .collect();
    rows.retain(|r| {
        (a.family.is_empty() || a.family.contains(&r.family)) && in_study(&r.study, &r.stage)
    });
    // A filter that matches none of the results there are is a typo, not an empty table.
    if rows.is_empty() && !unfiltered.is_empty() && (!a.family.is_empty() || a.study.is_some()) {
        let list = |v: Vec<&String>| {
            let mut v: Vec<&str> = v.into_iter().map(String::as_str).collect();
            v.sort();
            v.dedup();
            v.join(", ")
        };
        return Err(Error::Usage(format!(
            "no result matches{}{}; families with results: {}; studies: {}",
            if a.family.is_empty() {
                String::new()
            } else {
                format!(" --family {}", a.family.join(","))
            },
            a.study
                .as_ref()
                .map(|s| format!(" --study {s}"))
                .unwrap_or_default(),
            list(unfiltered.iter().map(|(f, _)| f).collect()),
            list(unfiltered.iter().map(|(_, s)| s).collect()),
        )));
    }
    let mut sort_by = None;
    if let Some(sort) = &a.sort {
        let (name, dir) = sort.split_once(':').unwrap_or((sort, ""));
        // JSON's name for the column is taken too.
        let name = match name {
            "test_acc_final" => "test_acc",
            other => other,
        };
        let col = COLUMNS.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
            Error::Usage(format!(
                "no column `{name}` to sort by; one of {}",
                names.join(", ")
            ))
        })?;
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            "" => col.descending,
            other => {
                return Err(Error::Usage(format!(
                    "`{other}` in --sort: write `{name}:asc` or `{name}:desc`"
                )))
            }
        };
        rows.sort_by(|x, y| {
            let o = (col.cell)(x).cmp(&(col.cell)(y));
            if descending {
                o.reverse()
            } else {
                o
            }
        });
        sort_by = Some((col.cell, descending));
    }
    if a.by == "variant" {
        let groups = super::show_by::variants(&rows, sort_by);
        match a.format.as_str() {
            "json" => print_json(&groups),
            f => super::show_by::table(&groups).print(f),
        }
    } else {
        match a.format.as_str() {
            "json" => print_json(&rows),
            f => Table::of_runs(&rows).print(f),
        }
    }
    if missing > 0 && a.format != "json" && a.format != "csv" {
        eprintln!(
            "{missing} evaluated variant(s){} not built yet (`pipe status` lists them)",
            match (a.study.is_some(), a.family.is_empty()) {
                (true, true) => " of the selected studies",
                (true, false) => " of the selected studies, of any family,",
                (false, false) => " of any family",
                (false, true) => "",
            }
        );
    }
    if left_out > 0 {
        // The rows shown are verified; the ones that could not be are not results.
        eprintln!(
            "{left_out} variant(s) left out: their cached results could not be verified (above)"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The evaluate nodes of the selection: those it reaches, and those that evaluate a
/// selected training. A `command` a report gathers is a run too (the user's own script).
fn evaluations(p: &Project, gatherers: &Gatherers, names: &[String]) -> Result<Vec<usize>, Error> {
    let is_eval = |n: usize| gatherers.is_run(p, n);
    if names.is_empty() {
        return Ok((0..p.plan.nodes.len()).filter(|&n| is_eval(n)).collect());
    }
    let named = p.plan.select(names).map_err(Error::Usage)?;
    let mut set: std::collections::BTreeSet<usize> = p
        .plan
        .closure(&named)
        .into_iter()
        .filter(|&n| is_eval(n))
        .collect();
    for n in (0..p.plan.nodes.len()).filter(|&n| is_eval(n)) {
        if p.plan.nodes[n].inputs.iter().any(|i| named.contains(i)) {
            set.insert(n);
        }
    }
    Ok(set.into_iter().collect())
}

fn cells(rows: &[Row], show: fn(&Cell) -> String) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| COLUMNS.iter().map(|c| show(&(c.cell)(r))).collect())
        .collect()
}

/// A table to print: column names (csv's header), headers, and the cells shown and raw.
pub(super) struct Table {
    pub names: Vec<&'static str>,
    pub headers: Vec<&'static str>,
    pub shown: Vec<Vec<String>>,
    pub raw: Vec<Vec<String>>,
}

impl Table {
    fn of_runs(rows: &[Row]) -> Table {
        Table {
            names: COLUMNS.iter().map(|c| c.name).collect(),
            headers: COLUMNS.iter().map(|c| c.header).collect(),
            shown: cells(rows, Cell::show),
            raw: cells(rows, Cell::raw),
        }
    }

    pub fn print(&self, format: &str) {
        match format {
            "csv" => self.print_csv(),
            "md" => self.print_markdown(),
            _ => self.print_text(),
        }
    }

    fn print_text(&self) {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                self.shown
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let _ = writeln!(out, "{}", line(&headers));
        for r in &self.shown {
            let _ = writeln!(out, "{}", line(r));
        }
    }

    fn print_markdown(&self) {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.headers.len()));
        for r in &self.shown {
            let r: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    }

    fn print_csv(&self) {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let _ = writeln!(out, "{}", self.names.join(","));
        for r in &self.raw {
            let r: Vec<String> = r.iter().map(|c| quote(c)).collect();
            let _ = writeln!(out, "{}", r.join(","));
        }
    }
}

/// A conclusions target: its matrices (markdown, one per figure; CSV, one effect a line;
/// JSON, every record), from its cached `conclusions.json`, checked against its hash.
fn conclusions(p: &Project, nodes: &[usize], format: &str) -> Result<ExitCode, Error> {
    use crate::report::conclusions::{matrix_csv, matrix_md, Conclusions, FIGURES, FILE};
    let cache = std::mem::ManuallyDrop::new(p.cache()?);
    for (n, h) in held(p, &cache, nodes) {
        let id = &p.plan.nodes[n].id;
        let Some(h) = h else {
            return Err(Error::Usage(format!(
                "`{id}` is not built yet: `pipe build {id}` (it retrains nothing)"
            )));
        };
        let out = h
            .built
            .outputs
            .iter()
            .find(|o| o.path.ends_with(&format!("/{FILE}")))
            .ok_or_else(|| Error::Usage(format!("`{id}` holds no {FILE}: rebuild it")))?;
        let bytes = super::results::read_output(&cache, &h.built, &out.path)
            .map_err(|e| Error::Usage(format!("`{id}`: {e}")))?
            .unwrap_or_default();
        let c: Conclusions = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Usage(format!("`{id}`: {FILE} does not parse: {e}")))?;
        if h.stale {
            eprintln!("warning: `{id}` is stale: its studies changed since it was built");
        }
        match format {
            "json" => println!("{}", String::from_utf8_lossy(&bytes)),
            "csv" => print!("{}", matrix_csv(&c)),
            _ => {
                for (kind, what) in FIGURES {
                    println!("## {what}: variant − base\n");
                    println!("{}", matrix_md(&c, kind, false));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
