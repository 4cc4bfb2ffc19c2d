//! Command-line syntax. Only parsing lives here; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reproducible, incremental builds for deep-learning hyperparameter studies.
#[derive(Parser, Debug)]
#[command(name = "pipe", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Project root (holds `pipelines/`, `reports/`, `cache/`) [default: the nearest folder at
    /// or above this one that holds `pipelines/`].
    #[arg(short = 'C', long = "dir", global = true, default_value = ".")]
    pub dir: PathBuf,
    /// Cache folder [default: <root>/cache].
    #[arg(long, global = true, env = "PIPE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Where train and evaluate stages run: cpu, cuda, or auto (CUDA when a GPU is usable).
    /// Overrides every stage's `device` (same as PIPE_DEVICE).
    #[arg(long, global = true, value_parser = ["cpu", "cuda", "auto"])]
    pub device: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str =
    "Exit codes: 0 success; 1 a stage failed (or was skipped because an input failed); \
2 invalid command line or pipeline files; 3 cache or file-system error.";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build targets (report files) or stages, and what they depend on. No target: every
    /// target of every pipeline.
    Build(BuildArgs),
    /// Show which stages are fresh and which would run, and why, without running anything.
    Status(StatusArgs),
    /// Explain, field by field, why a target or stage would rerun.
    Explain(ExplainArgs),
    /// Print the stage graph: a text tree, Graphviz dot or Mermaid.
    Dag(DagArgs),
    /// List pipeline files, stages (with their variants) and targets.
    List(ListArgs),
    /// Remove the built outputs of targets (materialized files and their cache entries), so
    /// the next build reruns their stages. No target: every target.
    Clean(CleanArgs),
    /// Remove cache entries and objects that no current pipeline reaches; print bytes freed.
    Gc(GcArgs),
    /// Read every cached object again (past the hash memo) and report each corrupt or
    /// missing one with the stages that use it. Exit 1 when something is damaged.
    Verify(VerifyArgs),
    /// One table of every evaluated variant (every seed) of the selected studies or stages
    /// (all by default), from what the cache holds.
    ///
    /// Example: pipe show reports/quick/momentum.md --sort test_acc
    ///
    /// A conclusions target prints its matrices instead (hyperparameter × family, one per
    /// figure; `--format csv` one effect a line, `json` every record):
    /// pipe show reports/quick/conclusions.md --format md
    Show(ShowArgs),
    /// The config fields and headline numbers that differ between two variants, in any
    /// studies.
    ///
    /// Example: pipe diff quick/linear:momentum 'quick/linear:momentum[optimizer.momentum=0.9]'
    Diff(DiffArgs),
    /// The output files a stage's cache entry holds: `name<TAB>path`, one a line.
    Outputs(OneArgs),
    /// The log a stage wrote when it was built.
    Log(OneArgs),
    /// Print a shell completion script: `pipe completions bash > /etc/bash_completion.d/pipe`,
    /// `pipe completions zsh > ~/.zfunc/_pipe`, `pipe completions fish >
    /// ~/.config/fish/completions/pipe.fish`.
    Completions(CompletionsArgs),
    /// Run exactly one stage against the cache and exit: what a Slurm job runs on its node.
    #[command(hide = true)]
    StageJob(StageJobArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Target paths (`reports/quick/momentum.md`) or stage ids (`quick/linear:momentum`).
    pub targets: Vec<String>,
    /// Build every target of every pipeline. Without targets, a build that would train for
    /// 200 epochs or more in all asks for it, with the cost.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// Parallel jobs (CPU slots) [default: number of cores].
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// GPUs of this machine to use: GPU stages get device indices 0..N [default: the CUDA
    /// devices this process sees, 1 when none].
    #[arg(long, env = "PIPE_GPUS")]
    pub gpus: Option<usize>,
    /// CPU threads of every CPU training, overriding each stage's `threads` and pipe's
    /// choice (one while others wait for cores, more when cores would idle; see README).
    /// Never in a key: the weights are the same bytes on any number of threads.
    #[arg(long, env = "PIPE_THREADS", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// How many GPU stages may share one GPU at once (small models use a sliver of one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..), env = "PIPE_GPU_SHARE")]
    pub gpu_share: u64,
    /// Where stages run: `local` (this machine) or `slurm` (train and evaluate stages as
    /// Slurm jobs, settings in slurm.ron; the cache must be on a file system the nodes share).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"], env = "PIPE_EXECUTOR")]
    pub executor: String,
    /// With `--executor slurm`: how many jobs may be in the queue at once.
    #[arg(long, default_value_t = 500)]
    pub max_jobs: usize,
    /// Say what would run and why, and run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// After a failure, go on building everything that does not depend on it.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Rebuild this stage (id or stage name; all its variants) even if fresh. Repeatable.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Also list stages that were already fresh.
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Print failures and the summary only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the summary as JSON (built, fresh, failed and skipped stages, targets, seconds)
    /// and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Limit to these targets or stages and what they depend on.
    pub targets: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when anything would run (as `git diff --exit-code`), 0 when all is fresh.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Target paths or stage ids.
    #[arg(required = true)]
    pub targets: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DagArgs {
    /// Limit to these targets or stages and what they depend on.
    pub targets: Vec<String>,
    /// Graphviz dot.
    #[arg(long, conflicts_with_all = ["mermaid", "json"])]
    pub dot: bool,
    /// Mermaid flowchart.
    #[arg(long, conflicts_with = "json")]
    pub mermaid: bool,
    /// The nodes (id, kind, inputs, target) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    /// Only the names a command takes, one a line: every target, then every stage id
    /// (what shell completion offers).
    #[arg(long, conflicts_with = "json")]
    pub names: bool,
}

#[derive(Args, Debug)]
pub struct StageJobArgs {
    /// The stage id (with its variant label).
    pub id: String,
    /// The key the submitting build computed; the job refuses to run under another.
    #[arg(long)]
    pub key: String,
    #[arg(long)]
    pub force: bool,
    /// Report progress as tagged lines on stdout, for the build that started this process.
    #[arg(long)]
    pub progress_lines: bool,
    /// The cores this stage may compute on [default: Slurm's `SLURM_CPUS_PER_TASK`, else
    /// what the stage asks for, at most this machine's cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stages to run after this one in the same process, each keyed here once this one is
    /// built (a training's evaluation in the training's Slurm job); one whose inputs are not
    /// all built is left to the build. They never change the exit code.
    #[arg(long, value_name = "ID")]
    pub then: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Targets or stages (a report target selects its study); none: every study.
    pub targets: Vec<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "md", "csv", "json"])]
    pub format: String,
    /// Sort by a column: study, variant, seed, family, best_val_acc, best_epoch, test_acc,
    /// test_acc_best, gap, epochs_to_90, status, seconds_per_epoch, backend. Accuracies sort
    /// best first; add `:asc` or `:desc` to choose.
    #[arg(long, value_name = "COLUMN[:asc|:desc]", value_hint = clap::ValueHint::Other,
          value_parser = SortColumn, hide_possible_values = true)]
    pub sort: Option<String>,
    /// Only these model families (linear, perceptron, mlp, convnet, resnet, highway, rnn …);
    /// repeatable.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub family: Vec<String>,
    /// Only studies or stages whose name contains this text.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub study: Option<String>,
    /// `run`: a row per run (every seed); `variant`: a row per variant of a study, each
    /// figure its mean ± sd over the seeds (the report's Results table).
    #[arg(long, default_value = "run", value_parser = ["run", "variant"])]
    pub by: String,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A variant: a train or evaluate stage id (with its `[label]`), or a target.
    pub a: String,
    pub b: String,
    /// Also list the results that are the same.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct OneArgs {
    /// A stage id (with its `[label]` for a variant) or a target path.
    pub target: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Remove damaged objects and drop the entries that use them, so the next build
    /// rebuilds those stages.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    pub targets: Vec<String>,
    /// List what would be removed, and remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Count what would be removed, and remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// `pipe show --sort`: any text (`:asc`/`:desc` after a column; `show` checks it, with the
/// columns in its message), with the column names as the values completion offers.
#[derive(Clone)]
struct SortColumn;

impl clap::builder::TypedValueParser for SortColumn {
    type Value = String;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        Ok(value.to_string_lossy().into_owned())
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            crate::commands::sort_columns().map(clap::builder::PossibleValue::new),
        ))
    }
}

/// The completion script for `shell`: the subcommands a person runs (not the hidden
/// `stage-job`), their options and values, and the project's targets and stage ids, read at
/// completion time (`pipe list --names`).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    let full = Cli::command();
    let mut cmd = clap::Command::new("pipe")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"));
    for a in full.get_arguments().filter(|a| !a.is_hide_set()) {
        cmd = cmd.arg(a.clone());
    }
    for s in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(s.clone());
    }
    let mut generated = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pipe", &mut generated);
    let generated = String::from_utf8_lossy(&generated);
    let naming = naming_subcommands(&cmd);
    let script = match shell {
        clap_complete::Shell::Bash => {
            let names = BASH_NAMES
                .replace("VALUED_OPTIONS", &valued_options(&cmd).join("|"))
                .replace("NAMING_SUBCOMMANDS", &naming.join("|"));
            format!("{generated}{names}")
        }
        clap_complete::Shell::Fish => format!(
            "{generated}{}",
            FISH_NAMES.replace("NAMING_SUBCOMMANDS", &naming.join(" "))
        ),
        clap_complete::Shell::Zsh => zsh_names(&generated),
        _ => generated.into_owned(),
    };
    let _ = out.write_all(script.as_bytes());
}

/// The positional arguments that take targets or stage ids: where completion offers the
/// project's (`pipe list --names`).
const NAME_ARGS: [&str; 4] = ["targets", "target", "a", "b"];

/// The subcommands with such an argument.
fn naming_subcommands(cmd: &clap::Command) -> Vec<&str> {
    cmd.get_subcommands()
        .filter(|s| {
            s.get_arguments()
                .any(|a| a.is_positional() && NAME_ARGS.contains(&a.get_id().as_str()))
        })
        .map(|s| s.get_name())
        .collect()
}

/// bash: the options whose value is not a target (after them, no ids are offered).
fn valued_options(cmd: &clap::Command) -> Vec<String> {
    let mut valued: Vec<String> = Vec::new();
    for a in cmd
        .get_arguments()
        .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()))
        .filter(|a| !a.is_positional() && a.get_action().takes_values() && a.get_id() != "force")
    {
        valued.extend(a.get_long().map(|l| format!("--{l}")));
        valued.extend(a.get_short().map(|c| format!("-{c}")));
    }
    valued.sort();
    valued.dedup();
    valued
}

/// zsh: the generated script completes every positional argument with `_default` (files);
/// those of [`NAME_ARGS`] (`'*::targets -- …:_default'`, `':b:_default'`) get `_pipe_names`
/// instead, defined before the script's last lines call `_pipe`.
fn zsh_names(script: &str) -> String {
    let takes_names = |line: &str| {
        let spec = line
            .strip_prefix("'*::")
            .or_else(|| line.strip_prefix("':"));
        NAME_ARGS.iter().any(|id| {
            spec.and_then(|s| s.strip_prefix(id))
                .is_some_and(|rest| rest.starts_with([' ', ':']))
        })
    };
    let mut out = String::with_capacity(script.len() + ZSH_NAMES.len());
    for line in script.lines() {
        if line.starts_with("if [ \"$funcstack[1]\" = \"_pipe\" ]") {
            out.push_str(ZSH_NAMES);
        }
        match line.strip_suffix(":_default' \\") {
            Some(head) if takes_names(line) => {
                out.push_str(head);
                out.push_str(":_pipe_names' \\");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// zsh: the project's targets and stage ids; files where the project offers none.
const ZSH_NAMES: &str = r#"(( $+functions[_pipe_names] )) ||
_pipe_names() {
    local -a names
    names=(${(f)"$(pipe list --names 2>/dev/null)"})
    compadd -a names || _files
}

"#;

/// fish: the project's targets and stage ids as arguments of the subcommands that take them.
const FISH_NAMES: &str = "complete -c pipe -n \"__fish_seen_subcommand_from NAMING_SUBCOMMANDS\" \
-a \"(pipe list --names 2>/dev/null)\"\n";

/// Wraps the generated `_pipe`: where a subcommand takes targets, the project's targets and
/// stage ids are offered as well. The word is taken from the line up to the cursor, since
/// bash splits `quick/linear:momentum` at the colon, and what the colon split off is trimmed
/// from the answers (as bash-completion's `__ltrim_colon_completions` does).
const BASH_NAMES: &str = r#"
_pipe_names() {
    _pipe "$@"
    local line="${COMP_LINE:0:COMP_POINT}" word
    word="${line##*[[:space:]]}"
    [[ "$word" == -* || ${COMP_CWORD} -lt 2 ]] && return
    case "${COMP_WORDS[COMP_CWORD-1]}" in
        VALUED_OPTIONS) return ;;
    esac
    case "${COMP_WORDS[1]}" in
        NAMING_SUBCOMMANDS)
            local names
            names="$(pipe list --names 2>/dev/null)" || return
            local IFS=$'
' m
            for m in $(compgen -W "$names" -- "$word"); do
                [[ "$word" == *:* ]] && m="${m#"${word%"${word##*:}"}"}"
                COMPREPLY+=("$m")
            done
            ;;
    esac
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _pipe_names -o nosort -o bashdefault -o default pipe
else
    complete -F _pipe_names -o bashdefault -o default pipe
fi
"#;
