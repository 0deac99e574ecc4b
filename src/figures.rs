//! The paper's figures at MNIST scale, drawn as PNG charts from recorded runs: the CSV logs
//! `cm train --fid-every` writes (`<run>.fid.csv`: step, FID, evaluations) and the rows `cm
//! eval --csv` writes (`results.csv`). `scripts/paper-figures` records the runs and keeps the
//! logs in `docs/figures/data/`; `cm plot` turns them into `docs/figures/*.png` and a table.
//!
//! Text is drawn with a TrueType font of the system (DejaVu Sans, Debian's `fonts-dejavu-core`),
//! registered once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::{Error, Result};

/// Where Debian and Ubuntu put DejaVu Sans.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Pixel size of every chart.
pub const SIZE: (u32, u32) = (800, 500);

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: its file name, title (with the step budget), axes and lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub file: &'static str,
    pub title: String,
    pub x_label: &'static str,
    pub y_label: &'static str,
    /// Evenly spaced powers of two on the x axis (network evaluations).
    pub log2_x: bool,
    /// Where the legend goes: a corner the lines leave free.
    pub legend: Corner,
    pub series: Vec<Series>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corner {
    UpperLeft,
    UpperRight,
    LowerLeft,
    LowerRight,
}

fn invalid(m: String) -> Error {
    Error::Invalid(m)
}

/// Registers the font once; an error names the file and the package that has it.
fn font() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT)
                .map_err(|e| format!("{FONT}: {e} (install Debian's fonts-dejavu-core; scripts/install does)"))?;
            register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
                .map_err(|_| format!("{FONT} is not a usable TrueType font"))
        })
        .clone()
        .map_err(invalid)
}

/// Draws `figure` into a PNG of [`SIZE`] at `path`.
pub fn draw(figure: &Figure, path: &Path) -> Result<()> {
    font()?;
    let points = figure.series.iter().flat_map(|s| &s.points);
    let x_of = |x: f64| if figure.log2_x { x.log2() } else { x };
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in points {
        (x0, x1, y1) = (x0.min(x_of(x)), x1.max(x_of(x)), y1.max(y));
    }
    if x0 > x1 {
        return Err(invalid(format!("figure {}: no data", figure.file)));
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let plot_error = |e: DrawingAreaErrorKind<_>| invalid(format!("drawing {}: {e}", path.display()));
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&figure.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y1 * 1.1)
        .map_err(plot_error)?;
    let log2 = figure.log2_x;
    let x_format = move |x: &f64| if log2 { format!("{}", 2f64.powf(*x).round()) } else { format!("{x}") };
    chart
        .configure_mesh()
        .x_desc(figure.x_label)
        .y_desc(figure.y_label)
        .x_label_formatter(&x_format)
        .x_labels(if log2 { (x1 - x0).round() as usize + 1 } else { 10 })
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    for (i, series) in figure.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = series.points.iter().map(|&(x, y)| (x_of(x), y)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(series.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(match figure.legend {
            Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
            Corner::UpperRight => SeriesLabelPosition::UpperRight,
            Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
            Corner::LowerRight => SeriesLabelPosition::LowerRight,
        })
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// The rows of a CSV file with a header, as maps from column name to text.
fn read_csv(path: &Path) -> Result<Vec<std::collections::HashMap<String, String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> =
        lines.next().ok_or_else(|| invalid(format!("{}: empty", path.display())))?.split(',').collect();
    lines
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != header.len() {
                return Err(invalid(format!(
                    "{} line {}: {} cells, expected {}",
                    path.display(),
                    i + 2,
                    cells.len(),
                    header.len()
                )));
            }
            Ok(header.iter().zip(cells).map(|(h, c)| (h.to_string(), c.to_string())).collect())
        })
        .collect()
}

fn number(row: &std::collections::HashMap<String, String>, key: &str, path: &Path) -> Result<f64> {
    let text = row.get(key).ok_or_else(|| invalid(format!("{}: no column '{key}'", path.display())))?;
    text.parse().map_err(|_| invalid(format!("{}: '{text}' in column '{key}' is not a number", path.display())))
}

/// (step, FID) of a `--fid-every` log.
pub fn fid_curve(path: &Path) -> Result<Vec<(f64, f64)>> {
    read_csv(path)?.iter().map(|row| Ok((number(row, "step", path)?, number(row, "fid", path)?))).collect()
}

/// A row of `results.csv`: the method (the label up to " (", so a method's rows from several
/// checkpoints form one line), the full label, network evaluations and FID.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub method: String,
    pub label: String,
    pub sampler: String,
    pub evaluations: f64,
    pub fid: f64,
    pub class_entropy: f64,
}

pub fn results(path: &Path) -> Result<Vec<Measured>> {
    read_csv(path)?
        .iter()
        .map(|row| {
            let label = row.get("label").cloned().unwrap_or_default();
            Ok(Measured {
                // `cm eval --csv` writes a label's commas as ';'.
                method: label.split(" (").next().unwrap_or_default().replace(';', ","),
                sampler: row.get("sampler").cloned().unwrap_or_default(),
                evaluations: number(row, "evaluations", path)?,
                fid: number(row, "fid", path)?,
                class_entropy: number(row, "class_entropy", path)?,
                label,
            })
        })
        .collect()
}

/// The figures of issue 8 from the logs in `data` that exist (a missing run leaves its line
/// out; a figure with no line is left out).
pub fn paper_figures(data: &Path) -> Result<Vec<Figure>> {
    let log = |name: &str| -> PathBuf { data.join(format!("{name}.fid.csv")) };
    let curves = |runs: &[(&str, &str)]| -> Result<Vec<Series>> {
        runs.iter()
            .filter(|(file, _)| log(file).exists())
            .map(|(file, name)| Ok(Series { name: name.to_string(), points: fid_curve(&log(file))? }))
            .collect()
    };
    let mut figures = vec![
        Figure {
            file: "a-cd-distance.png",
            title: "(a) CD (Heun, N = 18) by distance: 1-step FID over 500 steps".into(),
            x_label: "training step (tiny network, batch 32)",
            y_label: "FID of 1,000 one-step samples",
            log2_x: false,
            legend: Corner::LowerLeft,
            series: curves(&[
                ("cd-l2", "l2"),
                ("cd-l1", "l1"),
                ("cd-pseudo-huber", "pseudo-Huber"),
                ("cd-perceptual", "perceptual (LPIPS recipe)"),
            ])?,
        },
        Figure {
            file: "c-ct-schedule.png",
            title: "(c) CT: fixed N = 18, the N(k)/mu(k) schedule, improved CT (1,500 steps)".into(),
            x_label: "training step (tiny network, batch 32)",
            y_label: "FID of 1,000 one-step samples",
            log2_x: false,
            legend: Corner::LowerLeft,
            series: curves(&[
                ("ct-n18", "CT, fixed N = 18"),
                ("ct-nk", "CT, N(k) 2 -> 151, mu(k)"),
                ("ict-1500", "improved CT"),
            ])?,
        },
    ];
    // (b): the last FID of each (solver, N) run.
    let mut solver_lines = Vec::new();
    for (solver, name) in [("euler", "Euler"), ("heun", "Heun")] {
        let mut points = Vec::new();
        for n in [9, 12, 18, 36, 50, 60, 80, 120] {
            let path = log(&format!("cd-{solver}-n{n}"));
            if path.exists() {
                if let Some(&(_, fid)) = fid_curve(&path)?.last() {
                    points.push((n as f64, fid));
                }
            }
        }
        if !points.is_empty() {
            solver_lines.push(Series { name: format!("{name} teacher steps"), points });
        }
    }
    figures.push(Figure {
        file: "b-cd-solver-n.png",
        title: "(b) CD: teacher solver and grid size N, 1-step FID after 400 steps".into(),
        x_label: "N, points of the time grid",
        y_label: "FID of 2,000 one-step samples",
        log2_x: false,
        legend: Corner::UpperLeft,
        series: solver_lines,
    });
    // (d): FID against network evaluations, one line a method.
    let table = data.join("results.csv");
    if table.exists() {
        let mut series: Vec<Series> = Vec::new();
        for row in results(&table)? {
            match series.iter_mut().find(|s| s.name == row.method) {
                Some(s) => s.points.push((row.evaluations, row.fid)),
                None => series.push(Series { name: row.method.clone(), points: vec![(row.evaluations, row.fid)] }),
            }
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        figures.push(Figure {
            file: "d-fid-vs-evaluations.png",
            title: "(d) MNIST-FID against network evaluations (tiny network; 1,000 steps a method)".into(),
            x_label: "network evaluations per sample",
            y_label: "FID of 5,000 samples",
            log2_x: true,
            legend: Corner::UpperRight,
            series,
        });
    }
    figures.retain(|f| !f.series.is_empty());
    Ok(figures)
}

/// The numbers behind the figures as a markdown table: every row of `results.csv`, then the
/// last FID of every `--fid-every` log.
pub fn table(data: &Path) -> Result<String> {
    let mut out = String::new();
    let table = data.join("results.csv");
    if table.exists() {
        out.push_str("| run | sampler | evaluations | MNIST-FID | class entropy |\n|---|---|---|---|---|\n");
        for row in results(&table)? {
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.2} |\n",
                row.label.replace(';', ","),
                row.sampler.replace(';', ","),
                row.evaluations,
                row.fid,
                row.class_entropy
            ));
        }
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(data)
        .map_err(|e| invalid(format!("{}: {e}", data.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".fid.csv"))
        .collect();
    logs.sort();
    if !logs.is_empty() {
        out.push_str("\n| run (`--fid-every` log) | steps | last MNIST FID, 1 step |\n|---|---|---|\n");
        for path in logs {
            let name = path.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".fid.csv").to_string();
            if let Some(&(step, fid)) = fid_curve(&path)?.last() {
                out.push_str(&format!("| {name} | {step} | {fid:.1} |\n"));
            }
        }
    }
    Ok(out)
}
