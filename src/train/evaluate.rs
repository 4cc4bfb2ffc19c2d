//! Test-set scores of a trained model: loss, accuracy, per-class accuracy and the
//! confusion matrix, for the final weights and for the best-validation checkpoint.

use std::path::Path;

use anyhow::Context;
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::data::Batcher;
use super::fit::Summary;
use super::models::{generator, init, Model};
use crate::dataset::{Dataset, Split, CLASSES};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Scores {
    pub loss: f64,
    pub accuracy: f64,
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// `evaluation.json`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Evaluation {
    pub family: String,
    pub classes: Vec<String>,
    pub test_images: usize,
    pub epochs_run: usize,
    pub diverged_at_epoch: Option<usize>,
    pub best_epoch: Option<usize>,
    #[serde(rename = "final")]
    pub last: Scores,
    pub best: Scores,
}

pub fn scores<B: Backend>(
    model: &Model<B>,
    split: &Split,
    batcher: &Batcher,
    device: &B::Device,
) -> Scores {
    let mut confusion = vec![vec![0usize; CLASSES]; CLASSES];
    let mut loss = 0.0;
    let idx: Vec<usize> = (0..split.len()).collect();
    for chunk in idx.chunks(500) {
        let (x, y) = batcher.batch::<B>(split, chunk, device);
        let logits = model.forward(x);
        let n = chunk.len();
        loss += burn::nn::loss::CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits.clone(), y)
            .into_scalar()
            .elem::<f64>()
            * n as f64;
        let predicted = logits.argmax(1).reshape([n]).into_data();
        let predicted: Vec<i64> = predicted
            .convert::<i64>()
            .to_vec()
            .expect("int predictions");
        for (k, &i) in chunk.iter().enumerate() {
            confusion[split.labels[i] as usize]
                [predicted[k].clamp(0, CLASSES as i64 - 1) as usize] += 1;
        }
    }
    let total: usize = confusion.iter().flatten().sum();
    let right: usize = (0..CLASSES).map(|c| confusion[c][c]).sum();
    Scores {
        loss: loss / total.max(1) as f64,
        accuracy: right as f64 / total.max(1) as f64,
        per_class_accuracy: (0..CLASSES)
            .map(|c| {
                let n: usize = confusion[c].iter().sum();
                if n == 0 {
                    0.0
                } else {
                    confusion[c][c] as f64 / n as f64
                }
            })
            .collect(),
        confusion,
    }
}

/// Scores the train stage output in `trained` on the test split of `data`.
pub fn evaluate<B: Backend>(
    trained: &Path,
    data: &Dataset,
    device: &B::Device,
) -> anyhow::Result<Evaluation> {
    let read = |f: &str| {
        std::fs::read(trained.join(f)).with_context(|| format!("the train output lacks {f}"))
    };
    let cfg: TrainConfig = serde_json::from_slice(&read("config.json")?)?;
    let summary: Summary = serde_json::from_slice(&read("summary.json")?)?;
    let rec = BinFileRecorder::<FullPrecisionSettings>::new();
    let load = |stem: &str| -> anyhow::Result<Model<B>> {
        let record = rec
            .load(trained.join(stem), device)
            .with_context(|| format!("loading {stem}.bin"))?;
        // Its draws are overwritten, but must not take a training's seeded ones.
        let model = {
            let _draws = generator();
            init::<B>(&cfg.model, &cfg.initializer, &cfg.bias_initializer, device)
        };
        Ok(model.load_record(record))
    };
    let batcher = Batcher::new(&data.meta);
    Ok(Evaluation {
        family: summary.family,
        classes: data.meta.classes.clone(),
        test_images: data.test.len(),
        epochs_run: summary.epochs_run,
        diverged_at_epoch: summary.diverged_at_epoch,
        best_epoch: summary.best_epoch,
        last: scores(&load("model")?, &data.test, &batcher, device),
        best: scores(&load("best")?, &data.test, &batcher, device),
    })
}
