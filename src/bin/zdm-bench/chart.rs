//! Latency over time as SVG (plotters): one panel per run (the naive statement, then zdm), the
//! slowest and the median query of every 100 ms as two lines, failed queries as red dots, the
//! phases shaded and named.

use std::path::Path;

use plotters::prelude::*;

use crate::workload::Sample;

/// One panel: a run's samples and its phases (name, start s, end s).
pub struct Panel<'a> {
    pub title: String,
    pub samples: &'a [Sample],
    pub phases: &'a [(String, f64, f64)],
}

pub fn latency_chart(path: &Path, title: &str, panels: &[Panel<'_>]) -> anyhow::Result<()> {
    let height = 320 * panels.len() as u32 + 40;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((panels.len(), 1));
    // One latency scale for every panel, so they compare at a glance.
    let top = panels
        .iter()
        .flat_map(|p| p.samples.iter())
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .fold(10.0f64, f64::max)
        * 1.5;
    for (area, panel) in areas.iter().zip(panels) {
        let end = panel
            .samples
            .last()
            .map_or(1.0, |s| s.at.as_secs_f64())
            .max(1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, (0.1f64..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("latency (ms)")
            .draw()?;
        let shades = [
            RGBColor(255, 237, 160),
            RGBColor(199, 233, 192),
            RGBColor(198, 219, 239),
        ];
        for (i, (name, from, to)) in panel.phases.iter().enumerate() {
            let shade = shades[i % shades.len()];
            chart.draw_series(std::iter::once(Rectangle::new(
                [(*from, 0.1), (to.max(from + 0.05), top)],
                shade.mix(0.6).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                name.clone(),
                (*from, top / 1.6),
                ("sans-serif", 12),
            )))?;
        }
        let bins = bins(panel.samples);
        chart
            .draw_series(LineSeries::new(
                bins.iter().map(|b| (b.at, b.max_ms.max(0.1))),
                RED.mix(0.8).stroke_width(1),
            ))?
            .label("slowest query per 100 ms")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart
            .draw_series(LineSeries::new(
                bins.iter().map(|b| (b.at, b.median_ms.max(0.1))),
                BLUE.stroke_width(1),
            ))?
            .label("median per 100 ms")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(
                panel
                    .samples
                    .iter()
                    .filter(|s| !s.ok)
                    .map(|s| Circle::new(point(s), 2, RED.filled())),
            )?
            .label("failed query")
            .legend(|(x, y)| Circle::new((x + 10, y), 2, RED.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn point(s: &Sample) -> (f64, f64) {
    (
        s.at.as_secs_f64(),
        (s.latency.as_secs_f64() * 1000.0).max(0.1),
    )
}

/// The median and slowest latency of each 100 ms of the run.
struct Bin {
    at: f64,
    median_ms: f64,
    max_ms: f64,
}

fn bins(samples: &[Sample]) -> Vec<Bin> {
    let mut out: Vec<Bin> = Vec::new();
    let mut current: Vec<f64> = Vec::new();
    let mut index = 0u64;
    let mut flush = |index: u64, current: &mut Vec<f64>| {
        if current.is_empty() {
            return;
        }
        current.sort_by(f64::total_cmp);
        out.push(Bin {
            at: index as f64 / 10.0,
            median_ms: current[current.len() / 2],
            max_ms: current[current.len() - 1],
        });
        current.clear();
    };
    for s in samples {
        let i = (s.at.as_secs_f64() * 10.0) as u64;
        if i != index {
            flush(index, &mut current);
            index = i;
        }
        current.push(s.latency.as_secs_f64() * 1000.0);
    }
    flush(index, &mut current);
    out
}
