//! Files the commands read and write: checkpoints, PNGs, logs.

use std::path::Path;

use consistency::checkpoint::Checkpoint;
use consistency::Error;

pub fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

pub fn load_checkpoint(path: &Path) -> consistency::Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    Checkpoint::from_bytes(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Writes next to `path` and renames, so a crash mid-write never loses the previous checkpoint.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> consistency::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| io_error(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

pub fn append(path: &Path, text: &str) -> consistency::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io_error(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| io_error(path, e))
}
