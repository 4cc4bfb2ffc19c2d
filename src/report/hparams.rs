//! The HParams plugin's data beside a report's event files, so TensorBoard's HParams
//! dashboard lists the study's runs in one table, filters and sorts them by hyperparameter
//! and compares their final metrics (the plugin's protos: `tensorboard/plugins/hparams/
//! api.proto` and `plugin_data.proto`).
//!
//! - `tensorboard/` itself (the run `.`) gets the experiment: each varied field as a
//!   hyperparameter with its values as a discrete domain, and the metrics.
//! - each run's folder gets a second event file: its session (hyperparameter values, the
//!   variant as the group, so seed replicates are one row of the dashboard, their metrics
//!   averaged), the final figures as scalars, and the session's end (failure for a run
//!   that diverged or did not learn).

use std::path::Path;

use super::stats::stats;
use super::write::value_order;
use super::{slug, Run};
use crate::pipeline::SEED;
use crate::tfevents::{event, file_version, scalar, write_file, Msg};

/// After the training events (`events.out.tfevents.0.pipe`) in a folder's sorted order.
pub const FILE_NAME: &str = "events.out.tfevents.1.pipe-hparams";

const PLUGIN: &str = "hparams";

/// Final figures written as scalars at the last epoch: `(tag, description)`.
const FINAL: [(&str, &str); 8] = [
    (
        "final/best_validation_accuracy",
        "best validation accuracy over the epochs",
    ),
    ("final/test_accuracy", "test accuracy of the final weights"),
    (
        "final/test_accuracy_best_weights",
        "test accuracy of the weights of the best validation epoch",
    ),
    (
        "final/train_validation_gap",
        "final train accuracy minus final validation accuracy",
    ),
    (
        "final/epochs_to_90pct_of_best",
        "first epoch reaching 90% of the best validation accuracy",
    ),
    // The curves' losses include a regularizer's penalty (what the optimizer minimized);
    // the dashboard compares fits, so the penalty is its own metric.
    (
        "final/validation_cross_entropy",
        "validation loss at the last epoch, cross-entropy without the weight penalty",
    ),
    (
        "final/train_cross_entropy",
        "training loss at the last epoch, cross-entropy without the weight penalty",
    ),
    (
        "final/weight_penalty",
        "the L1/L2 weight penalty at the last epoch (absent without a regularizer)",
    ),
];

/// Curves whose last value is also a metric of the dashboard.
const CURVES: [(&str, &str); 1] = [(
    "validation/epoch_accuracy",
    "validation accuracy (last epoch)",
)];

/// A hyperparameter's value as `google.protobuf.Value`, from its canonical RON text:
/// `number_value = 2`, `string_value = 3`, `bool_value = 4`.
fn value(text: &str, numeric: bool) -> Msg {
    match text {
        "true" | "false" if !numeric => Msg::new().varint(4, (text == "true") as u64),
        _ if numeric => Msg::new().double(2, text.parse().unwrap_or(f64::NAN)),
        _ => Msg::new().str(3, text),
    }
}

/// `HParamsPluginData { version = 1, experiment = 2 | session_start_info = 3 |
/// session_end_info = 4 }` as one summary value: the plugin finds it by its tag and plugin
/// name; the empty tensor is what TensorBoard's own writer puts beside it.
fn plugin_summary(tag: &str, field: u32, data: Msg) -> Msg {
    let content = Msg::new().varint(1, 0).msg(field, data);
    let plugin_data = Msg::new().str(1, PLUGIN).msg(2, content);
    let metadata = Msg::new().msg(1, plugin_data);
    // TensorProto { dtype = 1: DT_FLOAT, tensor_shape = 2 { dim = 2 { size = 1: 0 } } }.
    let null_tensor = Msg::new()
        .varint(1, 1)
        .msg(2, Msg::new().msg(2, Msg::new().varint(1, 0)));
    let value = Msg::new().str(1, tag).msg(9, metadata).msg(8, null_tensor);
    Msg::new().msg(1, value)
}

/// The hyperparameters of a study: its varied fields. Not the seed: replicates are the
/// sessions of one group, so the group's row is the variant.
fn names(runs: &[Run]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, _) in runs.iter().flat_map(|r| &r.coords) {
        if k != SEED && !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

fn value_text(run: &Run, name: &str) -> String {
    run.value_of(name).unwrap_or_default().to_string()
}

/// Writes the experiment into `dir` (a report's `tensorboard/`) and a session into the
/// folder of each run, named as the report names them.
pub fn write(dir: &Path, title: &str, runs: &[Run]) -> std::io::Result<()> {
    let names = names(runs);
    let numeric: Vec<bool> = names
        .iter()
        .map(|n| runs.iter().all(|r| value_text(r, n).parse::<f64>().is_ok()))
        .collect();
    let start = runs
        .iter()
        .map(|r| r.timing.started_unix)
        .fold(f64::INFINITY, f64::min);
    let start = if start.is_finite() { start } else { 0.0 };

    // Experiment { description = 1, time_created_secs = 3, hparam_infos = 4,
    // metric_infos = 5, name = 6 }.
    let mut experiment = Msg::new()
        .str(
            1,
            "one-at-a-time study; seed replicates of a variant are one group",
        )
        .double(3, start);
    for (name, &num) in names.iter().zip(&numeric) {
        let mut values: Vec<String> = runs.iter().map(|r| value_text(r, name)).collect();
        values.sort_by(|a, b| value_order(a, b));
        values.dedup();
        // ListValue { values = 1 }.
        let domain = values
            .iter()
            .fold(Msg::new(), |l, v| l.msg(1, value(v, num)));
        let all_bool = values.iter().all(|v| v == "true" || v == "false");
        // DataType: 1 string, 2 bool, 3 float64.
        let kind = if num {
            3
        } else if all_bool {
            2
        } else {
            1
        };
        // HParamInfo { name = 1, type = 4, domain_discrete = 5 }.
        experiment = experiment.msg(4, Msg::new().str(1, name).varint(4, kind).msg(5, domain));
    }
    for (tag, description) in FINAL.iter().chain(&CURVES) {
        // MetricInfo { name = 1: MetricName { group = 1, tag = 2 }, display_name = 3,
        // description = 4 }.
        experiment = experiment.msg(
            5,
            Msg::new()
                .msg(1, Msg::new().str(2, tag))
                .str(3, tag.rsplit('/').next().unwrap_or(tag))
                .str(4, description),
        );
    }
    experiment = experiment.str(6, title);
    write_file(
        &dir.join(FILE_NAME),
        [
            file_version(start),
            event(start, 0).msg(5, plugin_summary("_hparams_/experiment", 2, experiment)),
        ],
    )?;

    for run in runs {
        let folder = dir.join(slug(&run.label));
        std::fs::create_dir_all(&folder)?;
        let s = stats(run);
        let t0 = run.timing.started_unix;
        let t1 = t0 + run.timing.epoch_seconds.iter().sum::<f64>();
        // SessionStartInfo { hparams = 1 (map: key = 1, value = 2), group_name = 4,
        // start_time_secs = 5 }.
        let mut session = Msg::new();
        for (name, &num) in names.iter().zip(&numeric) {
            let entry = Msg::new()
                .str(1, name)
                .msg(2, value(&value_text(run, name), num));
            session = session.msg(1, entry);
        }
        session = session.str(4, &run.variant()).double(5, t0);
        let last = run.metrics.iter().rev().find(|m| m.train_loss.is_finite());
        let figures = [
            s.best_val_acc,
            Some(s.test_acc_final),
            Some(s.test_acc_best),
            s.gap,
            s.epochs_to_90.map(|e| e as f64),
            last.and_then(|m| m.val_data_loss()),
            last.map(|m| m.train_data_loss()),
            s.final_penalty,
        ];
        let scalars = FINAL
            .iter()
            .zip(figures)
            .filter_map(|((tag, _), v)| v.filter(|v| v.is_finite()).map(|v| (tag, v)))
            .fold(Msg::new(), |m, (tag, v)| m.msg(1, scalar(tag, v as f32)));
        // SessionEndInfo { status = 1 (1 success, 2 failure), end_time_secs = 2 }.
        let status = if s.failure.is_some() { 2 } else { 1 };
        let end = Msg::new().varint(1, status).double(2, t1);
        let step = s.epochs as i64;
        write_file(
            &folder.join(FILE_NAME),
            [
                file_version(t0),
                event(t0, 0).msg(
                    5,
                    plugin_summary("_hparams_/session_start_info", 3, session),
                ),
                event(t1, step).msg(5, scalars),
                event(t1, step).msg(5, plugin_summary("_hparams_/session_end_info", 4, end)),
            ],
        )?;
    }
    Ok(())
}
