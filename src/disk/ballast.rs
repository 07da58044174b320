//! The ballast: space held back in `data_dir`, released when a volume fills to the last byte so
//! that the runs in flight can still be recorded, written again once there is room to spare.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Condition, Health, human_bytes};

/// Space held back in `data_dir` for the moment a volume fills to the last byte.
pub struct Ballast {
    pub path: PathBuf,
    /// The largest ballast (a quarter of the mark is used, up to this).
    pub max: u64,
}

impl Ballast {
    pub const FILE: &str = ".vigil-ballast";
    pub const MAX: u64 = 16 << 20;

    /// The ballast a low-water mark calls for: a quarter of it, 1 byte to [`Ballast::MAX`].
    pub(super) fn size(mark: u64) -> u64 {
        (mark / 4).clamp(1, Self::MAX)
    }

    pub fn in_dir(data_dir: &Path) -> Ballast {
        Ballast { path: data_dir.join(Self::FILE), max: Self::MAX }
    }

    /// Releases the ballast when a volume on its file system is low with less free space than
    /// it holds, and writes it again (at the size the mark calls for now) when every volume is
    /// healthy with room to spare. What it released, if anything.
    pub fn adjust(&self, health: &Health) -> Option<String> {
        let data = health.volumes.iter().find(|v| v.name == "data")?;
        let size = (data.min_free_bytes / 4).min(self.max);
        let held = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        // Only space on the ballast's own file system helps, and only when it is short of space
        // (not read-only, not failing).
        let nearly_full = health
            .volumes
            .iter()
            .any(|v| v.condition == Condition::Low && v.device == data.device && v.free_bytes < size.max(1));
        if held > 0 && nearly_full {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Some(format!(
                    "released the {} ballast ({}) so that the runs in flight can be recorded",
                    human_bytes(held),
                    self.path.display()
                )),
                Err(e) => Some(format!("cannot release the ballast {}: {e}", self.path.display())),
            };
        }
        let roomy = health.trouble().is_none() && data.free_bytes > data.min_free_bytes + 2 * size;
        if size > 0
            && held != size
            && roomy
            && let Err(e) = write_zeros(&self.path, size)
        {
            let _ = std::fs::remove_file(&self.path);
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the ballast");
        }
        None
    }
}

/// A file of `size` zero bytes, written (not sparse) so that its blocks are really taken.
fn write_zeros(path: &Path, size: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}
