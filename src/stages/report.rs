//! `report`: the study's markdown report, gathering every evaluated variant (an `evaluate`
//! stage's, or a `command`'s that writes the same files). Rendering is
//! [`crate::report`]; this kind only finds its inputs and where to write.

use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::report::{render, Meta, Run, RUN_KINDS};
use crate::stage::{Kind, RunCtx, StageConfig};

pub static REPORT: Kind<ReportConfig> = Kind::new("report", 7).gathering();

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    #[serde(default)]
    pub title: String,
    /// A paragraph under the title.
    #[serde(default)]
    pub description: String,
}

impl StageConfig for ReportConfig {
    fn run(&self, ctx: &mut RunCtx) -> anyhow::Result<()> {
        let mut runs = Vec::new();
        for input in ctx.inputs().iter().filter(|i| RUN_KINDS.contains(&i.kind)) {
            runs.push(Run::load(
                &input.label,
                &input.coords,
                &input.stage,
                &input.key,
                &input.dir,
            )?);
        }
        if runs.is_empty() {
            bail!(
                "a report reads `evaluate` stages, or `command` stages that write a run's files: \
                 give it one (it gathers every variant)"
            );
        }
        let (file, assets) = super::page_names(ctx.target(), "report.md");
        let title = if self.title.is_empty() {
            format!("Study: {assets}")
        } else {
            self.title.clone()
        };
        // The study's name in every figure title: the target without `reports/` and `.md`.
        let study = ctx
            .target()
            .map(crate::report::study_name)
            .unwrap_or_else(|| assets.clone());
        let meta = Meta {
            title: &title,
            study: &study,
            description: &self.description,
            assets: &assets,
        };
        let md = render(&meta, &mut runs, ctx.out_dir())?;
        let page = crate::report::html::page(&md, &title, ctx.out_dir())?;
        crate::stage::write_file(&ctx.out_dir().join(&file), md)?;
        let html = Path::new(&file).with_extension("html");
        crate::stage::write_file(&ctx.out_dir().join(html), page)?;
        ctx.log(format!("{} runs reported in {file}", runs.len()));
        Ok(())
    }
}
