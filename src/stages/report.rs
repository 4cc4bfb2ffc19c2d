//! `report`: the study's markdown report, gathering every evaluated variant. Rendering is
//! [`crate::report`]; this kind only finds its inputs and where to write.

use std::path::Path;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::report::{render, Meta, Run};
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
        for input in ctx.inputs().iter().filter(|i| i.kind == "evaluate") {
            runs.push(Run::load(
                &input.label,
                &input.coords,
                &input.stage,
                &input.dir,
            )?);
        }
        if runs.is_empty() {
            bail!("a report reads `evaluate` stages: give it one (it gathers every variant)");
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
            .map(|t| {
                let t = t.strip_prefix("reports/").unwrap_or(t);
                t.strip_suffix(".md").unwrap_or(t).to_string()
            })
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
