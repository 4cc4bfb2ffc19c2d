//! pipe: a hyperparameter study as a reproducible, incremental build.
//!
//! RON pipeline files ([`pipeline`]) expand into a DAG of stage variants ([`plan`]); the
//! [`engine`] fingerprints each stage, serves what it can from the content-addressed cache
//! and runs the rest; stage kinds ([`stages`]) plug in through [`stage`].

pub mod children;
pub mod cli;
pub mod commands;
pub mod dataset;
pub mod engine;
pub mod heap;
pub mod par;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod rng;
pub mod ron_path;
pub mod ron_words;
pub mod sealed;
pub mod stage;
pub mod stages;
pub mod tfevents;
pub mod train;
