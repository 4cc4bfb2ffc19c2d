//! The completion scripts `pipe completions SHELL` writes, run in the shells themselves
//! against a project: targets and stage ids complete, option values do, file names don't
//! where no file is meant.

use super::{study, util};

/// Completion scripts need no project and know the subcommands and their options.
#[test]
fn shell_completions_list_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_pipe()"),
        ("zsh", "#compdef pipe"),
        ("fish", "complete -c pipe"),
    ] {
        let o = std::process::Command::new(util::bin())
            .current_dir(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        for word in [
            "build",
            "show",
            "diff",
            "verify",
            "keep-going",
            "best_val_acc",
        ] {
            assert!(text.contains(word), "{shell} lacks {word}");
        }
        assert!(
            !text.contains("stage-job"),
            "{shell} offers the hidden stage-job"
        );
        assert!(
            text.contains("pipe list --names"),
            "{shell}: ids are offered"
        );
    }
    // In bash, run against a project: a subcommand's word completes to its targets and
    // stage ids (across the colon bash splits words at), `--sort` to its columns, and
    // `--study` to nothing from the file system.
    let bash = std::process::Command::new("bash").arg("--version").output();
    if !bash.is_ok_and(|o| o.status.success()) {
        return;
    }
    let p = study();
    let script = p.path().join("complete.bash");
    let o = p.cmd(&["completions", "bash"]).output().unwrap();
    std::fs::write(&script, &o.stdout).unwrap();
    let bin_dir = std::path::Path::new(util::bin()).parent().unwrap();
    let complete =
        |line: &str| -> Vec<String> {
            let words: Vec<&str> = line.split(' ').collect();
            let program =
                format!(
            "source {}\nCOMP_LINE='{line}'; COMP_POINT={}; COMP_WORDS=({}); COMP_CWORD={}\n\
             _pipe_names pipe \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            line.len(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
        );
            let o = std::process::Command::new("bash")
                .current_dir(p.path())
                .env(
                    "PATH",
                    format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
                )
                .args(["-c", &program])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
    assert_eq!(complete("pipe build rep"), ["reports/momentum.md"]);
    // `verify` takes no target: no ids after it.
    assert_eq!(complete("pipe verify mom"), Vec::<String>::new());
    let ids = complete("pipe status momentum:t");
    assert_eq!(ids, ["train"], "after the colon only: {ids:?}");
    let cols = complete("pipe show --sort test");
    assert_eq!(cols, ["test_acc", "test_acc_best"], "{cols:?}");
    std::fs::write(p.path().join("study-notes.txt"), "").unwrap();
    assert_eq!(complete("pipe show --study stu"), ["stu"], "no file names");
}

/// In zsh, through its real completion system (compinit, a pseudo-terminal, a TAB):
/// a subcommand's word completes to the project's stage ids and targets. Where zsh is not
/// installed the test says so and passes, unless `PIPE_REQUIRE_ZSH` is set (CI installs it).
#[test]
fn zsh_completes_stage_ids_and_targets() {
    if !std::process::Command::new("zsh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("PIPE_REQUIRE_ZSH").is_none(),
            "zsh is required"
        );
        eprintln!("zsh is not installed: `apt-get install zsh` to run this check");
        return;
    }
    let p = study();
    let functions = p.path().join("zfunc");
    std::fs::create_dir_all(&functions).unwrap();
    let o = p.cmd(&["completions", "zsh"]).output().unwrap();
    std::fs::write(functions.join("_pipe"), &o.stdout).unwrap();
    let bin_dir = std::path::Path::new(util::bin()).parent().unwrap();
    // The driver types `line`, a TAB and Enter into an interactive zsh; zle's line-finish hook
    // writes the line as completion left it (the command then runs: read-only ones here).
    let complete = |line: &str| -> String {
        let out = p.path().join("line");
        let _ = std::fs::remove_file(&out);
        let driver = format!(
            r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=({functions} \$fpath); autoload -U compinit; compinit -u -D; \
PATH={bin}:\$PATH; cd {project}; \
zle-line-finish() {{ [[ -n \$BUFFER ]] && print -r -- \$BUFFER > {out}.part && mv {out}.part {out} }}; \
zle -N zle-line-finish"
zpty -w -n z $'{line}\t\n'
for i in {{1..100}}; do [[ -e {out} ]] && break; sleep 0.1; done
zpty -d z
"#,
            functions = functions.display(),
            bin = bin_dir.display(),
            project = p.path().display(),
            out = out.display(),
        );
        let o = std::process::Command::new("zsh")
            .args(["-f", "-c", &driver])
            .output()
            .unwrap();
        std::fs::read_to_string(&out)
            .unwrap_or_else(|_| panic!("zsh gave no line for `{line}`: {o:?}"))
            .trim_end()
            .to_string()
    };
    assert_eq!(
        complete("pipe status momentum:tr"),
        "pipe status momentum:train",
        "a stage id"
    );
    assert_eq!(
        complete("pipe status reports/mom"),
        "pipe status reports/momentum.md",
        "a target"
    );
    assert_eq!(
        complete("pipe diff momentum:ev"),
        "pipe diff momentum:eval",
        "diff's A"
    );
}
