//! A matrix as a heatmap (hand-written SVG: plotters draws no hatching): one row per
//! hyperparameter, one column per family, each cell split into its variants from the lowest
//! value to the highest. Colour is the signed change (blue: the figure went up, red: down;
//! the legend gives the scale); a change that is not significant is pale and hatched, an
//! untested one grey and hatched, failed runs dark with a cross.

use std::fmt::Write as _;

use super::super::claims::Kind;
use super::super::html::escape;
use super::{cells, family_name, Conclusions, Mark};

const LABEL_W: f64 = 120.0;
const COL_W: f64 = 135.0;
const HEAD_H: f64 = 56.0;
const ROW_H: f64 = 34.0;
const LEGEND_H: f64 = 70.0;

fn mix(t: f64, rgb: (u8, u8, u8)) -> String {
    let ch = |c: u8| (255.0 + (c as f64 - 255.0) * t.clamp(0.0, 1.0)).round() as u8;
    format!("#{:02x}{:02x}{:02x}", ch(rgb.0), ch(rgb.1), ch(rgb.2))
}

const UP: (u8, u8, u8) = (33, 102, 172);
const DOWN: (u8, u8, u8) = (178, 24, 43);

fn unit(kind: Kind) -> (&'static str, f64) {
    match kind {
        Kind::Speed | Kind::Onset => ("epochs", 1.0),
        _ => ("points", 100.0),
    }
}

pub fn svg(c: &Conclusions, kind: Kind, title: &str) -> String {
    let by_cell = cells(c, kind);
    let (unit_name, scale) = unit(kind);
    let sig: Vec<f64> = c
        .effects
        .iter()
        .filter(|e| e.kind == kind && e.mark == Mark::Significant)
        .filter_map(|e| e.delta.map(|d| (d * scale).abs()))
        .collect();
    let all: Vec<f64> = c
        .effects
        .iter()
        .filter(|e| e.kind == kind)
        .filter_map(|e| e.delta.map(|d| (d * scale).abs()))
        .collect();
    let top = sig
        .iter()
        .chain(if sig.is_empty() {
            all.iter()
        } else {
            [].iter()
        })
        .fold(0.0f64, |m, &x| m.max(x))
        .max(1e-9);
    let w = (LABEL_W + COL_W * c.families.len() as f64 + 10.0).max(880.0);
    let h = HEAD_H + ROW_H * c.rows.len() as f64 + LEGEND_H;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\
<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#777\" stroke-width=\"1\"/></pattern></defs>\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
<text x=\"4\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
    for (fi, f) in c.families.iter().enumerate() {
        let x = LABEL_W + COL_W * fi as f64 + COL_W / 2.0;
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>",
            HEAD_H - 8.0,
            escape(&family_name(f))
        );
    }
    for (ri, row) in c.rows.iter().enumerate() {
        let y = HEAD_H + ROW_H * ri as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LABEL_W - 6.0,
            y + ROW_H / 2.0 + 4.0,
            escape(row)
        );
        for fi in 0..c.families.len() {
            let x0 = LABEL_W + COL_W * fi as f64;
            let Some(list) = by_cell.get(&(ri, fi)) else {
                let _ = write!(
                    s,
                    "<rect x=\"{x0}\" y=\"{y}\" width=\"{COL_W}\" height=\"{ROW_H}\" fill=\"white\" stroke=\"#ccc\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#999\">—</text>",
                    x0 + COL_W / 2.0,
                    y + ROW_H / 2.0 + 4.0
                );
                continue;
            };
            let sub = COL_W / list.len() as f64;
            for (k, e) in list.iter().enumerate() {
                let x = x0 + sub * k as f64;
                let d = e.delta.map(|d| d * scale);
                let tone = d.map(|d| (d.abs() / top).min(1.0)).unwrap_or(0.0);
                let colour = if d.unwrap_or(0.0) >= 0.0 { UP } else { DOWN };
                let (fill, hatch, text_fill) = match (e.mark, d) {
                    (Mark::Failed, _) | (_, None) => ("#444444".to_string(), false, "white"),
                    (Mark::Significant, _) => (
                        mix(0.15 + 0.85 * tone, colour),
                        false,
                        if tone > 0.6 { "white" } else { "black" },
                    ),
                    (Mark::NotSignificant, _) => (mix(0.30 * tone, colour), true, "black"),
                    (Mark::Untested, _) => ("#dddddd".to_string(), true, "black"),
                };
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{sub:.1}\" height=\"{ROW_H}\" fill=\"{fill}\" stroke=\"white\"><title>{}</title></rect>",
                    escape(&format!("{} {}: {}", e.field, e.value, d.map_or("failed".into(), |d| format!("{d:+.1} {unit_name}"))))
                );
                if hatch {
                    let _ = write!(s, "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{sub:.1}\" height=\"{ROW_H}\" fill=\"url(#hatch)\" opacity=\"0.5\"/>");
                }
                let text = match d {
                    _ if e.mark == Mark::Failed => "✗".to_string(),
                    None => "✗".to_string(),
                    Some(d) => format!("{d:+.1}"),
                };
                if sub >= 26.0 {
                    let _ = write!(
                        s,
                        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{text_fill}\">{}</text>",
                        x + sub / 2.0,
                        y + ROW_H / 2.0 + 4.0,
                        escape(&text)
                    );
                }
            }
            let _ = write!(s, "<rect x=\"{x0}\" y=\"{y}\" width=\"{COL_W}\" height=\"{ROW_H}\" fill=\"none\" stroke=\"#888\"/>");
        }
    }
    // Legend.
    let ly = HEAD_H + ROW_H * c.rows.len() as f64 + 18.0;
    let keys = [
        (
            mix(1.0, UP),
            false,
            format!("+{top:.1} {unit_name} (significant)"),
        ),
        (
            mix(1.0, DOWN),
            false,
            format!("−{top:.1} {unit_name} (significant)"),
        ),
        (mix(0.3, UP), true, "not significant".to_string()),
        (
            "#dddddd".to_string(),
            true,
            "untested (one seed)".to_string(),
        ),
        ("#444444".to_string(), false, "✗ failed runs".to_string()),
    ];
    let mut x = 4.0;
    for (fill, hatch, text) in keys {
        let _ = write!(s, "<rect x=\"{x}\" y=\"{ly}\" width=\"14\" height=\"14\" fill=\"{fill}\" stroke=\"#888\"/>");
        if hatch {
            let _ = write!(s, "<rect x=\"{x}\" y=\"{ly}\" width=\"14\" height=\"14\" fill=\"url(#hatch)\" opacity=\"0.5\"/>");
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            x + 18.0,
            ly + 11.0,
            escape(&text)
        );
        x += 18.0 + 7.0 * text.chars().count() as f64 + 14.0;
    }
    let _ = write!(
        s,
        "<text x=\"4\" y=\"{}\" fill=\"#444\">Each cell: the family's variants of that hyperparameter, lowest value left; the number is variant − base, in {unit_name}.</text></svg>",
        ly + 34.0
    );
    s
}
