//! The report's chart (SVG): every target as "measured / target" (≤ 1 is
//! met), and the median latencies of the start, end-to-end and completion
//! figures side by side with their baselines. Both on log scales.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::{fmt_num, Report};

const MET: RGBColor = RGBColor(46, 139, 87);
const MISSED: RGBColor = RGBColor(200, 55, 55);
const BGTASK: RGBColor = RGBColor(52, 101, 164);
const BASELINE: RGBColor = RGBColor(150, 150, 150);

struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
    text: String,
}

pub fn write(report: &Report, path: &Path) -> Result<()> {
    let targets: Vec<Bar> = report
        .checks()
        .filter_map(|(section, check)| {
            let used = check.budget_used()?;
            Some(Bar {
                label: format!(
                    "{} {}",
                    section.title.split_whitespace().next().unwrap_or(""),
                    strip(&check.name)
                ),
                value: used,
                color: if check.met() == Some(true) {
                    MET
                } else {
                    MISSED
                },
                text: fmt_num(check.value, check.unit),
            })
        })
        .collect();
    let latencies: Vec<Bar> = report
        .sections
        .iter()
        .filter(|s| matches!(s.key, "start" | "e2e" | "completion"))
        .flat_map(|s| s.series.iter())
        .filter(|s| s.unit == "ms")
        .map(|s| {
            let baseline = s.label.contains("sh -c") || s.label.contains("pueue");
            Bar {
                label: strip(&s.label),
                value: s.median(),
                color: if baseline { BASELINE } else { BGTASK },
                text: fmt_num(s.median(), "ms"),
            }
        })
        .collect();

    let changes: Vec<Bar> = report
        .sections
        .iter()
        .filter(|s| s.key == "compare")
        .flat_map(|s| s.series.iter())
        .map(|s| Bar {
            label: strip(&s.label),
            value: s.median(),
            color: if s.label.ends_with("before") {
                BASELINE
            } else {
                BGTASK
            },
            text: fmt_num(s.median(), "ms"),
        })
        .collect();

    let height_of = |n: usize| 90 + 26 * n.max(1) as u32;
    let (top_h, bottom_h) = (height_of(targets.len()), height_of(latencies.len()));
    let changes_h = if changes.is_empty() {
        0
    } else {
        height_of(changes.len())
    };
    let root = SVGBackend::new(path, (1200, top_h + bottom_h + changes_h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let (top, rest) = root.split_vertically(top_h);
    let (bottom, last) = rest.split_vertically(bottom_h);
    if !changes.is_empty() {
        panel(
            &last,
            "Before and after the changes, median ms (grey before, blue after)",
            "milliseconds",
            &changes,
            None,
        )?;
    }
    panel(
        &top,
        "Targets: measured / target (left of the line = met; green met, red missed)",
        "measured / target (for \"≥\" targets: target / measured)",
        &targets,
        Some(1.0),
    )?;
    panel(
        &bottom,
        "Median latency, ms (blue bgtask, grey baselines)",
        "milliseconds",
        &latencies,
        None,
    )?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    bars: &[Bar],
    line_at: Option<f64>,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("{e:?}");
    let n = bars.len().max(1);
    let finite = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite() && *v > 0.0);
    let lo = finite
        .clone()
        .fold(f64::INFINITY, f64::min)
        .min(line_at.unwrap_or(1.0))
        / 3.0;
    let hi = finite.fold(0.0, f64::max).max(line_at.unwrap_or(1.0)) * 4.0;
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.01, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(470)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())
        .map_err(err)?;
    // Row 0 is drawn at the bottom: put the first bar at the top.
    let row = |i: usize| n - 1 - i;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(r) if *r < n => {
                labels.get(n - 1 - r).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .y_label_style(("sans-serif", 12))
        .x_desc(x_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let v = if b.value.is_finite() {
                b.value.max(lo * 1.01)
            } else {
                hi
            };
            let mut rect = Rectangle::new(
                [
                    (lo, SegmentValue::Exact(row(i))),
                    (v, SegmentValue::Exact(row(i) + 1)),
                ],
                b.color.filled(),
            );
            rect.set_margin(4, 4, 0, 0);
            rect
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let v = if b.value.is_finite() {
                b.value.max(lo * 1.01)
            } else {
                hi / 1.5
            };
            Text::new(
                b.text.clone(),
                (v * 1.05, SegmentValue::CenterOf(row(i))),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))
        .map_err(err)?;
    if let Some(x) = line_at {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
    }
    Ok(())
}

/// A label without Markdown backticks.
fn strip(text: &str) -> String {
    text.replace('`', "")
}
