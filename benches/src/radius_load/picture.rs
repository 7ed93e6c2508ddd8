//! The picture of a run, as SVG: offered, answered and dropped per second above, latency
//! percentiles per second below.

use std::path::Path;

use plotters::prelude::*;

use super::LoadReport;

/// Writes `report` as an SVG picture to `path`, titled `title`.
pub fn write_svg(report: &LoadReport, title: &str, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(340);
    let seconds = report.seconds.len().max(1) as u32;

    let most = report
        .seconds
        .iter()
        .map(|s| s.offered.max(s.answered))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0u64..most + most / 10)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("requests per second")
        .draw()?;
    let series = |f: fn(&super::Second) -> u64| {
        report
            .seconds
            .iter()
            .enumerate()
            .map(move |(i, s)| (i as u32, f(s)))
    };
    chart
        .draw_series(LineSeries::new(series(|s| s.offered), &BLUE))?
        .label("offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(|s| s.answered), &GREEN))?
        .label("answered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(series(|s| s.dropped), &RED))?
        .label("dropped")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let slowest = report
        .seconds
        .iter()
        .map(|s| s.p99_us)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..seconds, 0u64..slowest + slowest / 10)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("latency (us)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(series(|s| s.p50_us), &BLACK))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .draw_series(LineSeries::new(series(|s| s.p99_us), &MAGENTA))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
