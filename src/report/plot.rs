//! Charts as SVG (plotters), made to be read in print and by colour-blind readers: the
//! Okabe–Ito palette, and each series also told apart by its dash and marker, drawn the same
//! way in a legend that sits beside the data, never on it. Accuracy axes are in percent like
//! the tables; a loss axis turns logarithmic when its curves span orders of magnitude; epoch
//! ticks are whole numbers.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Okabe & Ito's palette (yellow last: faint on white).
const COLORS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(230, 159, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Dash patterns (dash, gap in pixels); `None` is solid.
const DASHES: [Option<(u32, u32)>; 4] = [None, Some((9, 5)), Some((2, 4)), Some((16, 5))];

/// How a series is drawn: colour, dash and marker all follow from one index, so two series
/// differ in all three, and a train/validation pair can share a colour and differ in dash.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    pub color: usize,
    pub dash: usize,
    pub marker: usize,
}

impl Look {
    pub fn nth(i: usize) -> Look {
        Look {
            color: i,
            dash: i,
            marker: i,
        }
    }
}

/// A named curve of (epoch, value) points, with an optional band (epoch, low, high): the
/// spread over seeds. Non-finite values are left out.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
    pub look: Look,
}

/// One chart of a figure.
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// What a figure says of its axes, for the text under it.
#[derive(Default, Debug)]
pub struct Drawn {
    /// Panels whose y axis is logarithmic, by title.
    pub log_axes: Vec<String>,
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Curves spanning more than this ratio (all positive) get a log axis.
const LOG_RATIO: f64 = 30.0;

/// Draws the panels one above the other with one legend (the first panel's series) at the
/// right: a figure stays 860 px wide, so a page shows it at full size, its text readable.
pub fn figure(path: &Path, panels: &[Panel]) -> anyhow::Result<Drawn> {
    let legend_w = 300;
    let panel_w = 560;
    let height = 400 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (panel_w + legend_w, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plots, legend) = root.split_horizontally(panel_w);
    let areas = plots.split_evenly((panels.len(), 1));
    let mut drawn = Drawn::default();
    for (panel, area) in panels.iter().zip(&areas) {
        if draw_panel(area, panel)? {
            drawn.log_axes.push(panel.title.clone());
        }
    }
    if let Some(first) = panels.first() {
        draw_legend(&legend, &first.series)?;
    }
    root.present().map_err(err)?;
    Ok(drawn)
}

fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points.iter().filter(|p| p.1.is_finite()).copied().collect()
}

/// Returns whether the y axis is logarithmic.
fn draw_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panel: &Panel,
) -> anyhow::Result<bool> {
    let mut ys: Vec<f64> = Vec::new();
    let mut x_max: f64 = 2.0;
    for s in &panel.series {
        for (x, y) in finite(&s.points) {
            ys.push(y);
            x_max = x_max.max(x);
        }
        for &(x, lo, hi) in &s.band {
            ys.extend([lo, hi].into_iter().filter(|v| v.is_finite()));
            x_max = x_max.max(x);
        }
    }
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let log = lo > 0.0 && hi / lo > LOG_RATIO;
    let ticks = (x_max as usize).clamp(2, 10);
    let epoch_label = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 17))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60);
    let x_range = 1.0..x_max;
    if log {
        let mut chart = builder
            .build_cartesian_2d(x_range, (lo / 1.2..hi * 1.2).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(format!("{} (log scale)", panel.y_label))
            .x_labels(ticks)
            .x_label_formatter(&epoch_label)
            .y_label_formatter(&|y| plain(*y))
            .draw()
            .map_err(err)?;
        draw_series(&mut chart, &panel.series)?;
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = builder
            .build_cartesian_2d(x_range, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(panel.y_label.as_str())
            .x_labels(ticks)
            .x_label_formatter(&epoch_label)
            .draw()
            .map_err(err)?;
        draw_series(&mut chart, &panel.series)?;
    }
    Ok(log)
}

/// A tick label without trailing zeros: 10, 100, 0.5, 2.25.
pub fn plain(y: f64) -> String {
    let digits = if y.abs() >= 10.0 {
        0
    } else if y.abs() >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{y:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn draw_series<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    series: &[Series],
) -> anyhow::Result<()>
where
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for s in series {
        let c = color(s.look.color);
        let band: Vec<(f64, f64, f64)> = s
            .band
            .iter()
            .filter(|b| b.1.is_finite() && b.2.is_finite())
            .copied()
            .collect();
        if band.len() >= 2 {
            let outline: Vec<(f64, f64)> = band
                .iter()
                .map(|b| (b.0, b.2))
                .chain(band.iter().rev().map(|b| (b.0, b.1)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.18).filled())))
                .map_err(err)?;
        }
        let pts = finite(&s.points);
        let style = c.stroke_width(2);
        match DASHES[s.look.dash % DASHES.len()] {
            None => chart.draw_series(LineSeries::new(pts.clone(), style)),
            Some((dash, gap)) => {
                chart.draw_series(DashedLineSeries::new(pts.clone(), dash, gap, style))
            }
        }
        .map_err(err)?;
        let every = pts.len().div_ceil(8).max(1);
        let marked: Vec<(f64, f64)> = pts.iter().step_by(every).copied().collect();
        let pts = marked.into_iter();
        match s.look.marker % 4 {
            0 => chart
                .draw_series(pts.map(|p| Circle::new(p, 4, c.filled())))
                .map(|_| ()),
            1 => chart
                .draw_series(pts.map(|p| TriangleMarker::new(p, 5, c.filled())))
                .map(|_| ()),
            2 => {
                chart
                    .draw_series(pts.map(|p| {
                        EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], c.filled())
                    }))
                    .map(|_| ())
            }
            _ => chart
                .draw_series(pts.map(|p| Cross::new(p, 4, c.stroke_width(2))))
                .map(|_| ()),
        }
        .map_err(err)?;
    }
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    series: &[Series],
) -> anyhow::Result<()> {
    let (x0, mut y) = (8i32, 48i32);
    for s in series {
        let c = color(s.look.color);
        let style = c.stroke_width(2);
        let sample = 34;
        match DASHES[s.look.dash % DASHES.len()] {
            None => {
                area.draw(&PathElement::new(vec![(x0, y), (x0 + sample, y)], style))
                    .map_err(err)?;
            }
            Some((dash, gap)) => {
                let mut x = x0;
                while x < x0 + sample {
                    let end = (x + dash as i32).min(x0 + sample);
                    area.draw(&PathElement::new(vec![(x, y), (end, y)], style))
                        .map_err(err)?;
                    x = end + gap as i32;
                }
            }
        }
        let p = (x0 + sample / 2, y);
        match s.look.marker % 4 {
            0 => area.draw(&Circle::new(p, 4, c.filled())),
            1 => area.draw(&TriangleMarker::new(p, 5, c.filled())),
            2 => area.draw(&Rectangle::new(
                [(p.0 - 4, p.1 - 4), (p.0 + 4, p.1 + 4)],
                c.filled(),
            )),
            _ => area.draw(&Cross::new(p, 4, c.stroke_width(2))),
        }
        .map_err(err)?;
        let name = s.name.clone();
        area.draw(&Text::new(
            name,
            (x0 + sample + 8, y - 7),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        y += 22;
    }
    Ok(())
}

/// A confusion matrix as a heatmap: rows are the true class, columns the predicted one, each
/// cell shaded by its share of the row and labelled with its count.
pub fn confusion(
    path: &Path,
    title: &str,
    classes: &[String],
    matrix: &[Vec<usize>],
) -> anyhow::Result<()> {
    let n = classes.len().max(1);
    let cell = 40i32;
    let (left, top) = (110i32, 60i32);
    let size = (
        left as u32 + cell as u32 * n as u32 + 20,
        top as u32 + cell as u32 * n as u32 + 90,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let font = |s: i32| ("sans-serif", s).into_font().color(&BLACK);
    root.draw(&Text::new(title.to_string(), (10, 12), font(16)))
        .map_err(err)?;
    for (i, row) in matrix.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (j, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            let (x, y) = (left + j as i32 * cell, top + i as i32 * cell);
            // White to Okabe–Ito blue.
            let mix = |to: u8| (255.0 - share * (255.0 - f64::from(to))).round() as u8;
            let fill = RGBColor(mix(0), mix(114), mix(178));
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                fill.filled(),
            ))
            .map_err(err)?;
            let text_color = if share > 0.5 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x + 8, y + 13),
                ("sans-serif", 12).into_font().color(&text_color),
            ))
            .map_err(err)?;
        }
    }
    for (i, c) in classes.iter().enumerate() {
        root.draw(&Text::new(
            c.clone(),
            (6, top + i as i32 * cell + 14),
            font(12),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            c.chars().take(5).collect::<String>(),
            (left + i as i32 * cell + 3, top + n as i32 * cell + 8),
            font(11),
        ))
        .map_err(err)?;
    }
    root.draw(&Text::new(
        "rows: true class; columns: predicted class; shade: share of the row".to_string(),
        (10, top + n as i32 * cell + 34),
        font(12),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        "true ↓  predicted →".to_string(),
        (10, 36),
        font(12),
    ))
    .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
