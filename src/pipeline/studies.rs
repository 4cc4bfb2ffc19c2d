//! `studies`: one definition for a family of one-at-a-time studies. A family file held
//! three stages per hyperparameter, copied and edited 9 times; here each study is one line
//! and becomes the same three stages a user writes by hand, with the same names:
//! - `NAME`, a `train` that `extends` the family's base with the study's
//!   `vary`/`grid`/`set`/`seeds`;
//! - `NAME_eval`, an `evaluate` of `[NAME, data]`;
//! - `NAME_report`, a `report` of `[NAME_eval]`, its target and title filled in from the
//!   family's patterns (`{name}`, `{about}`).
//!
//! A file rewritten with it therefore keeps every stage id and every cache key. Errors in
//! a made stage point at what was written: the study's own fields, or the family's.

use indexmap::IndexMap;
use ron::value::RawValue;
use serde::Deserialize;

use crate::ron_path::FieldPath;

use super::error::Place;
use super::files::{spans, spans_each, ConfigText, Draft};
use super::Loader;

#[derive(Deserialize)]
#[serde(rename = "Studies", deny_unknown_fields)]
pub(super) struct FamilyModel<'a> {
    /// The base `train` stage every study varies.
    extends: String,
    /// The data stage the evaluations read the test set from.
    data: String,
    /// Each report's path, e.g. `reports/mlp/{name}.md`.
    target: String,
    /// Each report's title, e.g. `{about} of the MLP`.
    #[serde(default)]
    title: Option<String>,
    /// Replicates of every variant of every study, unless a study says otherwise.
    #[serde(default)]
    seeds: Option<u64>,
    #[serde(borrow)]
    each: Vec<StudyModel<'a>>,
}

#[derive(Deserialize)]
#[serde(rename = "Study", deny_unknown_fields)]
struct StudyModel<'a> {
    name: String,
    /// What the study is about, for `{about}`: `the learning rate`; else the name with
    /// spaces for underscores.
    #[serde(default)]
    about: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default, borrow)]
    set: IndexMap<String, &'a RawValue>,
    #[serde(default, borrow)]
    vary: IndexMap<String, Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    grid: IndexMap<String, Vec<&'a RawValue>>,
    #[serde(default)]
    seeds: Option<u64>,
}

/// `pattern` with `{name}` and `{about}` filled in; `{{` and `}}` are braces.
fn fill(pattern: &str, name: &str, about: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 32);
    let mut rest = pattern;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{name}") {
            out.push_str(name);
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{about}") {
            out.push_str(about);
            rest = t;
        } else {
            let end = tail.find('}').map_or(tail.len(), |e| e + 1);
            return Err(format!("`{}` is not a placeholder", &tail[..end]));
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Loader<'_> {
    /// The stages of family `i` of file `fi` (parsed from `text`), appended to `drafts`.
    pub(super) fn expand_studies(
        &mut self,
        fi: usize,
        text: &str,
        i: usize,
        family: FamilyModel<'_>,
        drafts: &mut Vec<Draft>,
    ) {
        let fam = FieldPath::default().key("studies").index(i);
        let hint = "placeholders are `{name}` and `{about}`; write `{{` and `}}` for braces";
        if !family.target.contains("{name}") {
            self.error_at(
                fi,
                &fam.clone().key("target"),
                format!("target pattern `{}` has no `{{name}}`", family.target),
                Some("each study writes its own report, e.g. `reports/mlp/{name}.md`".into()),
            );
            return;
        }
        if family.each.is_empty() {
            self.error_at(
                fi,
                &fam.clone().key("each"),
                "`each` lists no study".into(),
                Some(
                    "add `(name: \"momentum\", vary: {\"optimizer.momentum\": [0.0, 0.99]})`"
                        .into(),
                ),
            );
            return;
        }
        for (j, study) in family.each.into_iter().enumerate() {
            let st = fam.clone().key("each").index(j);
            let name = study.name;
            let about = study.about.unwrap_or_else(|| name.replace('_', " "));
            let target = match fill(&family.target, &name, &about) {
                Ok(t) => t,
                Err(e) => {
                    self.error_at(fi, &fam.clone().key("target"), e, Some(hint.into()));
                    return;
                }
            };
            let config = match family.title.as_deref().map(|t| fill(t, &name, &about)) {
                None => None,
                Some(Ok(title)) => {
                    let title = ron::to_string(&title).expect("a string serializes");
                    Some(ConfigText::Made(format!("(title: {title})")))
                }
                Some(Err(e)) => {
                    self.error_at(fi, &fam.clone().key("title"), e, Some(hint.into()));
                    return;
                }
            };
            let at_name = st.clone().key("name");
            let seeds_at = if study.seeds.is_some() {
                st.clone().key("seeds")
            } else {
                fam.clone().key("seeds")
            };
            let train = Draft {
                file: fi,
                place: Place::made(
                    st.clone(),
                    vec![
                        ("name", at_name.clone()),
                        ("extends", fam.clone().key("extends")),
                        ("seeds", seeds_at),
                    ],
                ),
                name: name.clone(),
                kind: None,
                description: study.description,
                extends: Some(family.extends.clone()),
                inputs: None,
                deps: None,
                config: None,
                set: spans(text, study.set),
                vary: spans_each(text, study.vary),
                grid: spans_each(text, study.grid),
                seeds: study.seeds.or(family.seeds),
                target: None,
            };
            let made = |kind: &str, suffix: &str, inputs: Vec<String>, moved| Draft {
                file: fi,
                place: Place::made(st.clone(), moved),
                name: format!("{name}_{suffix}"),
                kind: Some(kind.to_string()),
                description: String::new(),
                extends: None,
                inputs: Some(inputs),
                deps: None,
                config: None,
                set: Vec::new(),
                vary: Vec::new(),
                grid: Vec::new(),
                seeds: None,
                target: None,
            };
            let evaluate = made(
                "evaluate",
                "eval",
                vec![name.clone(), family.data.clone()],
                vec![
                    ("name", at_name.clone()),
                    ("inputs", fam.clone().key("data")),
                    ("inputs[0]", at_name.clone()),
                    ("inputs[1]", fam.clone().key("data")),
                ],
            );
            let report = Draft {
                config,
                target: Some(target),
                ..made(
                    "report",
                    "report",
                    vec![format!("{name}_eval")],
                    vec![
                        ("name", at_name.clone()),
                        ("inputs", at_name.clone()),
                        ("inputs[0]", at_name),
                        ("target", fam.clone().key("target")),
                        ("config", fam.clone().key("title")),
                    ],
                )
            };
            drafts.extend([train, evaluate, report]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::fill;
    use crate::pipeline::{load_files, Spec, SpecErrors};

    const COMMON: &str = r#"Pipeline(stages: [
        (name: "cifar10", kind: "download", config: (source: Local("data"))),
        (name: "data", kind: "normalize", inputs: ["cifar10"], config: (validation: 10)),
        (name: "mlp", kind: "train", inputs: ["data"], config: (model: Mlp(hidden: [8]), epochs: 2)),
    ])"#;

    const BY_HAND: &str = r#"Pipeline(uses: ["common.ron"], stages: [
        (name: "momentum", extends: "mlp", vary: {"optimizer.momentum": [0.0, 0.5]}, seeds: 2),
        (name: "momentum_eval", kind: "evaluate", inputs: ["momentum", "data"]),
        (name: "momentum_report", kind: "report", inputs: ["momentum_eval"], target: "reports/mlp/momentum.md", config: (title: "Study: momentum of the MLP")),
        (name: "learning_rate", extends: "mlp", description: "lr", grid: {"optimizer.lr": [0.1, 0.2], "batch_size": [8, 16]}, set: {"epochs": 3}),
        (name: "learning_rate_eval", kind: "evaluate", inputs: ["learning_rate", "data"]),
        (name: "learning_rate_report", kind: "report", inputs: ["learning_rate_eval"], target: "reports/mlp/learning_rate.md", config: (title: "Study: the \"learning\" rate of the MLP")),
    ])"#;

    const SHORT: &str = r#"Pipeline(uses: ["common.ron"], studies: [(
        extends: "mlp",
        data: "data",
        target: "reports/mlp/{name}.md",
        title: "Study: {about} of the MLP",
        seeds: 2,
        each: [
            (name: "momentum", vary: {"optimizer.momentum": [0.0, 0.5]}),
            (name: "learning_rate", about: "the \"learning\" rate", description: "lr", grid: {"optimizer.lr": [0.1, 0.2], "batch_size": [8, 16]}, set: {"epochs": 3}, seeds: 1),
        ],
    )])"#;

    fn load(study: &str) -> Result<Spec, SpecErrors> {
        let files = vec![
            (PathBuf::from("common.ron"), COMMON.to_string()),
            (PathBuf::from("mlp.ron"), study.to_string()),
        ];
        load_files(files, &crate::stages::all(), None)
    }

    /// Everything of a spec that reaches a stage's key or its place in the graph.
    fn shape(spec: &Spec) -> Vec<String> {
        let mut out: Vec<String> = spec
            .defs
            .iter()
            .map(|d| {
                let inputs: Vec<&str> =
                    d.inputs.iter().map(|&i| spec.defs[i].id.as_str()).collect();
                let variants: Vec<String> = d
                    .variants
                    .iter()
                    .map(|v| format!("{} {}", v.label, v.parsed.canonical))
                    .collect();
                format!(
                    "{} {} {:?} {:?} {:?} {}",
                    d.id,
                    d.kind.name(),
                    inputs,
                    d.target,
                    variants,
                    d.description
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_family_makes_the_stages_written_by_hand() {
        let by_hand = shape(&load(BY_HAND).unwrap());
        let short = shape(&load(SHORT).unwrap());
        assert_eq!(by_hand.len(), 9);
        assert_eq!(short, by_hand);
    }

    fn errors(study: &str) -> String {
        match load(study) {
            Ok(_) => panic!("loaded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_in_a_family_point_at_what_was_written() {
        let e = errors(&SHORT.replace("[0.0, 0.5]", "[0.0, 1.5]"));
        assert!(
            e.contains(
                "pipelines/mlp.ron:8:67: studies[0].each[0].vary[\"optimizer.momentum\"][1]"
            ),
            "{e}"
        );
        let e = errors(&SHORT.replace("\"mlp\",\n", "\"mpl\",\n"));
        assert!(
            e.contains("mlp.ron:2:18: studies[0].extends: unknown stage `mpl`"),
            "{e}"
        );
        let e = errors(&SHORT.replace("data: \"data\"", "data: \"dta\""));
        assert!(
            e.contains("mlp.ron:3:15: studies[0].data: unknown stage `dta`"),
            "{e}"
        );
        assert_eq!(e.matches("error:").count(), 2, "once per study: {e}");
        let e = errors(&SHORT.replace("{name}.md", "all.md"));
        assert!(e.contains("mlp.ron:4:17: studies[0].target: target pattern `reports/mlp/all.md` has no `{name}`"), "{e}");
        let e = errors(&SHORT.replace("{about}", "{abut}"));
        assert!(
            e.contains("mlp.ron:5:16: studies[0].title: `{abut}` is not a placeholder"),
            "{e}"
        );
        let e = errors(&SHORT.replace("seeds: 2", "seeds: 0"));
        assert!(
            e.contains("mlp.ron:6:16: studies[0].seeds: `seeds` must be at least 1"),
            "{e}"
        );
        let e = errors(&SHORT.replace("\"learning_rate\"", "\"momentum\""));
        assert!(
            e.contains("mlp.ron:9:20: studies[0].each[1].name: stage `momentum` is defined twice"),
            "{e}"
        );
        let e = errors(&SHORT.replace("each: [", "ech: ["));
        assert!(e.contains("mlp.ron:7:"), "{e}");
    }

    #[test]
    fn patterns_fill_name_and_about_and_refuse_other_placeholders() {
        assert_eq!(
            fill("reports/{name}.md", "l2", "L2").unwrap(),
            "reports/l2.md"
        );
        assert_eq!(
            fill("{about} of the MLP {{x}}", "lr", "the learning rate").unwrap(),
            "the learning rate of the MLP {x}"
        );
        assert_eq!(
            fill("reports/{nmae}.md", "a", "b").unwrap_err(),
            "`{nmae}` is not a placeholder"
        );
        assert!(fill("reports/{name", "a", "b").is_err());
    }
}
