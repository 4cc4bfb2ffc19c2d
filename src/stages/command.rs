//! `command`: a shell command as a stage, for steps pipe has no kind for (and for comparing
//! pipe's orchestration with other tools on identical trivial work).
//!
//! The command runs with `sh -c` in its (empty) output folder; whatever it leaves there is
//! the output. It sees its inputs through the environment: `PIPE_INPUTS` (the input folders,
//! one per line), `PIPE_INPUT_<i>`, `PIPE_INPUT_<i>_LABEL` (the variant label), plus
//! `PIPE_OUT`, `PIPE_SCRATCH` (kept across an interrupted run), `PIPE_TARGET` and `PIPE_ROOT`
//! (the project root), and `PIPE_SEED` when the config has a `seed` (what `seeds: N`
//! replicates). The key covers the config, the inputs and the files named in `deps`: the
//! script the command runs belongs there.
//!
//! A command a `report` gathers is a training run of the user's own: it writes the three
//! files an `evaluate` stage writes ([`crate::report::RUN_FILES`]), and the report, `pipe
//! show` and TensorBoard take it as they take a built-in family.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::stage::{FieldError, Kind, Resources, RunCtx, StageConfig};

pub static COMMAND: Kind<CommandConfig> = Kind::new("command", 1);
/// The same, run once over every variant of its inputs (a report).
pub static COMMAND_GATHER: Kind<CommandConfig> = Kind::new("command_gather", 1).gathering();

/// How many trailing lines of the command's output are kept in the stage log.
const LOG_LINES: usize = 200;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub run: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub cpus: usize,
    #[serde(default)]
    pub gpus: usize,
    /// Passed on as `PIPE_SEED`: the field `seeds: N` varies, as a train stage's `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn one() -> usize {
    1
}

impl StageConfig for CommandConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.run.trim().is_empty() {
            return Err(FieldError::new("run", "the command is empty")
                .hint("e.g. run: \"python train.py\""));
        }
        if self.cpus == 0 {
            return Err(FieldError::new(
                "cpus",
                "a command needs at least one CPU slot",
            ));
        }
        Ok(())
    }

    fn resources(&self) -> Resources {
        Resources {
            cpus: self.cpus,
            gpus: self.gpus,
            more_cpus: 0,
        }
    }

    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&self.run)
            .current_dir(ctx.out_dir())
            .envs(&self.env);
        cmd.env("PIPE_OUT", ctx.out_dir())
            .env("PIPE_SCRATCH", ctx.scratch_dir())
            .env("PIPE_ROOT", ctx.project_root());
        cmd.env("PIPE_TARGET", ctx.target().unwrap_or(""));
        if let Some(seed) = self.seed {
            cmd.env("PIPE_SEED", seed.to_string());
        }
        if !ctx.gpus().is_empty() {
            // The devices the scheduler gave this stage, and only those.
            cmd.env(
                "CUDA_VISIBLE_DEVICES",
                crate::children::cuda_visible(ctx.gpus()),
            );
        }
        let dirs: Vec<String> = ctx
            .inputs()
            .iter()
            .map(|i| i.dir.to_string_lossy().into_owned())
            .collect();
        cmd.env("PIPE_INPUTS", dirs.join("\n"));
        for (i, input) in ctx.inputs().iter().enumerate() {
            cmd.env(format!("PIPE_INPUT_{i}"), &input.dir)
                .env(format!("PIPE_INPUT_{i}_LABEL"), &input.label);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = crate::children::spawn(&mut cmd)
            .with_context(|| format!("cannot start `sh -c {:?}`", self.run))?;
        let pid = child.id();
        let out = child.wait_with_output();
        crate::children::forget_pid(pid);
        let out = out.with_context(|| format!("`sh -c {:?}` could not be waited for", self.run))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(LOG_LINES)..] {
            ctx.log(l);
        }
        if !out.status.success() {
            bail!(
                "command exited with {}: {}",
                out.status,
                lines.last().copied().unwrap_or("(no output)")
            );
        }
        Ok(())
    }
}
