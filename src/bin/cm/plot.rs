//! `cm plot`: every figure whose logs exist, and the table of their numbers.

use std::path::PathBuf;

use consistency::figures;

use crate::files::io_error;

#[derive(clap::Args)]
pub struct Args {
    /// The logs: <run>.fid.csv files and results.csv.
    #[arg(long, default_value = "docs/figures/data")]
    data: PathBuf,
    /// Where the PNG charts and table.md go.
    #[arg(long, default_value = "docs/figures")]
    out: PathBuf,
}

pub fn run(args: &Args) -> consistency::Result<()> {
    let (data, out) = (&args.data, &args.out);
    std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    for figure in figures::paper_figures(data)? {
        let path = out.join(figure.file);
        figures::draw(&figure, &path)?;
        println!("{}: {}", path.display(), figure.title);
    }
    let table = figures::table(data)?;
    let path = out.join("table.md");
    std::fs::write(&path, &table).map_err(|e| io_error(&path, e))?;
    println!("{}:\n{table}", path.display());
    Ok(())
}
