//! `conclusions`: one report across studies (every family, every hyperparameter) from the
//! study reports it gathers. Reading and rendering is [`crate::report::conclusions`]; this
//! kind finds its inputs and where to write. It reads the reports' claims, never a run:
//! adding a study reruns that study's branch and this stage, nothing else.

use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::report::conclusions::{gather, write, Study};
use crate::stage::{Kind, RunCtx, StageConfig};

pub static CONCLUSIONS: Kind<ConclusionsConfig> = Kind::new("conclusions", 1).gathering();

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ConclusionsConfig {
    #[serde(default)]
    pub title: String,
    /// A paragraph under the title.
    #[serde(default)]
    pub description: String,
}

impl StageConfig for ConclusionsConfig {
    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let own = ctx.target().map(str::to_string);
        let mut studies = Vec::new();
        for input in ctx.inputs().iter().filter(|i| i.kind == "report") {
            studies.push(Study::load(
                &input.stage,
                input.target.as_deref(),
                &input.dir,
                own.as_deref(),
            )?);
        }
        if studies.is_empty() {
            bail!("`conclusions` reads `report` stages: give it some (`inputs: [\"*_report\"]` takes every study the file sees)");
        }
        let (file, assets) = super::page_names(own.as_deref(), "conclusions.md");
        let title = if self.title.is_empty() {
            "Conclusions across families".to_string()
        } else {
            self.title.clone()
        };
        let c = gather(&studies);
        let md = write(&c, &title, &self.description, &assets, ctx.out_dir())?;
        let page = crate::report::html::page(&md, &title, ctx.out_dir())?;
        crate::stage::write_file(&ctx.out_dir().join(&file), md)?;
        crate::stage::write_file(
            &ctx.out_dir().join(Path::new(&file).with_extension("html")),
            page,
        )?;
        ctx.log(format!(
            "{} studies of {} families concluded in {file}",
            c.studies.len(),
            c.families.len()
        ));
        Ok(())
    }
}
