//! Latency over time as SVG (plotters): one panel per run (the naive statement, then zdm), each
//! query a dot (red when it failed), the phases shaded and named.

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
        chart.draw_series(
            panel
                .samples
                .iter()
                .filter(|s| s.ok)
                .map(|s| Circle::new(point(s), 1, BLUE.mix(0.4).filled())),
        )?;
        chart.draw_series(
            panel
                .samples
                .iter()
                .filter(|s| !s.ok)
                .map(|s| Circle::new(point(s), 2, RED.filled())),
        )?;
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
