//! Charts of experiment results, as SVG (plotters; text is left to the
//! viewer's fonts, so nothing here needs a font stack).

use std::path::Path;

use plotters::prelude::*;

use super::Table;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// Draw the table's figure to `path` (SVG).
pub fn plot(table: &Table, path: &Path) -> Result<(), String> {
    let fig = table
        .figure
        .as_ref()
        .ok_or_else(|| "this experiment has no figure".to_string())?;
    let xs = fig.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = fig.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let tx = |x: f64| if fig.log2_x { x.max(1e-9).log2() } else { x };
    let (x0, x1) = xs
        .map(tx)
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = ys.fold(0.0f64, f64::max);
    if x0.partial_cmp(&x1) != Some(std::cmp::Ordering::Less) {
        return Err("nothing to plot".into());
    }
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&table.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.1).max(1e-9))
        .map_err(err)?;
    let log2 = fig.log2_x;
    let x_fmt = move |x: &f64| {
        if log2 {
            format!("2^{x:.0}")
        } else {
            format!("{x}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(fig.x.as_str())
        .y_desc(fig.y.as_str())
        .x_label_formatter(&x_fmt)
        .draw()
        .map_err(err)?;
    for (k, s) in fig.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
