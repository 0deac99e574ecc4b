//! `cm plot`'s figures: drawn from a small fixed set of logs (tests/fixtures/figures) as
//! non-empty PNG charts of the right size, with a line per method; a damaged log is an error
//! that names it.

use std::path::Path;

use consistency::figures::{self, SIZE};

const DATA: &str = "tests/fixtures/figures";

#[test]
fn figures_come_from_the_logs_that_exist() {
    let figures = figures::paper_figures(Path::new(DATA)).unwrap();
    let files: Vec<&str> = figures.iter().map(|f| f.file).collect();
    // (c) has no log in the fixture, so it is left out.
    assert_eq!(files, ["a-cd-distance.png", "b-cd-solver-n.png", "d-fid-vs-evaluations.png"]);
    let a = &figures[0];
    assert_eq!(a.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["l2", "perceptual (LPIPS recipe)"]);
    assert_eq!(a.series[1].points, [(100.0, 28.0), (200.0, 19.5), (300.0, 15.2)]);
    let b = &figures[1];
    assert_eq!(b.series[0].points, [(18.0, 19.9)], "Euler: N = 18 only");
    assert_eq!(b.series[1].points, [(9.0, 16.1), (18.0, 17.3)], "Heun: in order of N");
    // (d): a method's rows from several checkpoints form one line, sorted by evaluations.
    let d = &figures[2];
    let pd = d.series.iter().find(|s| s.name == "PD").expect("a PD line");
    assert_eq!(pd.points, [(1.0, 25.0), (2.0, 20.0)]);
    assert_eq!(d.series.len(), 3, "teacher, PD and CD: {:?}", d.series);
}

#[test]
fn charts_are_non_empty_pngs_of_the_right_size() {
    let out = std::env::temp_dir().join(format!("cm-figures-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    for figure in figures::paper_figures(Path::new(DATA)).unwrap() {
        let path = out.join(figure.file);
        figures::draw(&figure, &path).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), SIZE, "{}", figure.file);
        // Lines, text and grid: far from a blank white canvas.
        let drawn = pixels.chunks(info.line_size / info.width as usize).filter(|p| p.iter().any(|&v| v < 200)).count();
        let share = drawn as f64 / (info.width * info.height) as f64;
        assert!(share > 0.01, "{}: only {:.2}% of pixels drawn", figure.file, 100.0 * share);
    }
    let table = figures::table(Path::new(DATA)).unwrap();
    assert!(table.contains("| PD (2-step student) | euler, 2 steps (2 evaluations) | 2 | 20.0 | 2.10 |"), "{table}");
    assert!(table.contains("| cd-perceptual | 300 | 15.2 |"), "{table}");
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn a_damaged_log_is_an_error_that_names_it() {
    let dir = std::env::temp_dir().join(format!("cm-figures-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cd-l2.fid.csv"), "step,fid,evaluations\n100,abc,1\n").unwrap();
    let error = figures::paper_figures(&dir).unwrap_err().to_string();
    assert!(error.contains("cd-l2.fid.csv") && error.contains("'abc'"), "{error}");
    std::fs::write(dir.join("cd-l2.fid.csv"), "step,fid,evaluations\n100,1\n").unwrap();
    let error = figures::paper_figures(&dir).unwrap_err().to_string();
    assert!(error.contains("line 2"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}
