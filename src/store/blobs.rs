//! Content-addressed blobs (captures, diffs, baselines' images: `sha256/ab/cd/abcd…`) in the
//! [`BlobStore`] — a directory ([`FileBlobs`], `<data_dir>/blobs` by default) or an S3-compatible
//! bucket ([`ObjectBlobs`], shared by replicas) — and the approved baseline files
//! (`baselines/<monitor>/<viewport>.png`), an export for people. Every file write is atomic —
//! temp file in the same directory, fsync, rename, fsync of the directory — so a crash leaves the
//! old file or the new one, never half of one; an object write is atomic by S3's own rule.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use super::objects::ObjectBlobs;
use crate::config::{BlobLocation, MonitorName};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob id (expected 64 lowercase hex characters)")]
    InvalidDigest,
    #[error("invalid viewport key")]
    InvalidViewport,
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("file system error at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Object(object_store::Error),
}

impl BlobError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BlobError::Io { .. } | BlobError::Object(_))
    }

    /// What went wrong, on one line of at most 400 characters (an object store's error
    /// carries the server's whole answer, XML and all).
    pub fn detail(&self) -> String {
        let text = match self {
            BlobError::Object(e) => e.to_string(),
            BlobError::Io { path, source } => format!("{}: {source}", path.display()),
            other => other.to_string(),
        };
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match line.char_indices().nth(400) {
            Some((at, _)) => format!("{}…", &line[..at]),
            None => line,
        }
    }

    /// `storage_full` (no space, quota), `storage_error` (read-only, I/O), or `None` when
    /// the disk is not at fault.
    pub fn storage_fault(&self) -> Option<&'static str> {
        match self {
            BlobError::Io { source, .. } => Some(storage_code(source)),
            BlobError::Object(_) => Some("storage_error"),
            _ => None,
        }
    }
}

/// The code of a failed file system write: `storage_full` or `storage_error`.
pub fn storage_code(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    match e.kind() {
        StorageFull | QuotaExceeded => "storage_full",
        _ => "storage_error",
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_owned(), source }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn valid_digest(d: &str) -> bool {
    d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A viewport key (`1280x800`, `390x844@3x-mobile`) as produced by `Viewport::key`: safe as a
/// file name.
pub fn valid_viewport(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 40
        && v.as_bytes()[0].is_ascii_digit()
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"@.-".contains(&b))
        && !v.contains("..")
}

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| BlobError::Io { path: path.to_owned(), source: e.error })?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// Where vigil keeps its images: a directory or a bucket. Every call is async; file system
/// calls run off the async threads.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Files(FileBlobs),
    Objects(ObjectBlobs),
}

impl BlobStore {
    /// The store `storage.blobs` names. Fails only on settings the S3 client refuses.
    pub fn open(location: &BlobLocation) -> Result<Self, String> {
        Ok(match location {
            BlobLocation::Files(dir) => Self::files(FileBlobs::in_dir(dir)),
            BlobLocation::S3(s3) => Self::objects(ObjectBlobs::s3(s3)?),
        })
    }

    pub fn files(files: FileBlobs) -> Self {
        Self { backend: Backend::Files(files) }
    }

    pub fn objects(objects: ObjectBlobs) -> Self {
        Self { backend: Backend::Objects(objects) }
    }

    /// `file:///…` or `s3://bucket/prefix`, for logs.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Files(f) => format!("file://{}", f.root.parent().unwrap_or(&f.root).display()),
            Backend::Objects(o) => o.location(),
        }
    }

    /// Whether the store answers: a bucket is listed (it exists, the credentials are good); a
    /// directory is the disk checks' business ([`crate::disk`]).
    pub async fn check(&self) -> Result<(), BlobError> {
        match &self.backend {
            Backend::Files(_) => Ok(()),
            Backend::Objects(o) => o.check().await,
        }
    }

    /// Stores `bytes` and returns their digest. Storing a blob again renews its write time, so
    /// the orphan sweep never takes a blob being used again.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<String, BlobError> {
        match &self.backend {
            Backend::Files(f) => blocking(f, move |f| f.put(&bytes)).await,
            Backend::Objects(o) => o.put(bytes).await,
        }
    }

    pub async fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        match &self.backend {
            Backend::Files(f) => {
                let d = digest.to_owned();
                blocking(f, move |f| f.get(&d)).await
            }
            Backend::Objects(o) => o.get(digest).await,
        }
    }

    /// Whether the blob is there (a file's existence, an object's HEAD).
    pub async fn exists(&self, digest: &str) -> Result<bool, BlobError> {
        match &self.backend {
            Backend::Files(f) => {
                let d = digest.to_owned();
                blocking(f, move |f| Ok(f.contains(&d))).await
            }
            Backend::Objects(o) => o.exists(digest).await,
        }
    }

    /// Deletes a blob; `false` if it was not there.
    pub async fn remove(&self, digest: &str) -> Result<bool, BlobError> {
        match &self.backend {
            Backend::Files(f) => {
                let d = digest.to_owned();
                blocking(f, move |f| f.remove(&d)).await
            }
            Backend::Objects(o) => o.remove(digest, None).await,
        }
    }

    /// Deletes a blob only if it was last written before `cutoff`; whether it was deleted.
    pub async fn remove_if_written_before(
        &self,
        digest: &str,
        cutoff: std::time::SystemTime,
    ) -> Result<bool, BlobError> {
        match &self.backend {
            Backend::Files(f) => {
                let d = digest.to_owned();
                blocking(f, move |f| f.remove_if_written_before(&d, cutoff)).await
            }
            Backend::Objects(o) => o.remove(digest, Some(cutoff)).await,
        }
    }

    /// Blob digests last written before `cutoff`, and temporary files of interrupted writes
    /// older than that (a directory's only), at most `limit` in all.
    pub async fn written_before(
        &self,
        cutoff: std::time::SystemTime,
        limit: usize,
    ) -> Result<(Vec<String>, Vec<PathBuf>), BlobError> {
        match &self.backend {
            Backend::Files(f) => blocking(f, move |f| f.written_before(cutoff, limit)).await,
            Backend::Objects(o) => Ok((o.written_before(cutoff, limit).await?, Vec::new())),
        }
    }
}

/// Runs a file store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    files: &FileBlobs,
    call: impl FnOnce(&FileBlobs) -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    let files = files.clone();
    tokio::task::spawn_blocking(move || call(&files)).await.expect("blob file calls do not panic")
}

/// Content-addressed files under `<dir>/sha256/`.
#[derive(Debug, Clone)]
pub struct FileBlobs {
    root: PathBuf,
}

impl FileBlobs {
    /// The default place: `<data_dir>/blobs`.
    pub fn new(data_dir: &Path) -> Self {
        Self::in_dir(&data_dir.join("blobs"))
    }

    pub fn in_dir(dir: &Path) -> Self {
        Self { root: dir.join("sha256") }
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        if !valid_digest(digest) {
            return Err(BlobError::InvalidDigest);
        }
        Ok(self.root.join(&digest[0..2]).join(&digest[2..4]).join(digest))
    }

    /// Stores `bytes` (once: an existing blob is not rewritten, only its modification time
    /// renewed, so the orphan sweep never takes a blob being used again) and returns its digest.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let digest = sha256_hex(bytes);
        let path = self.path(&digest)?;
        let touched = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if touched.is_err() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Deletes a blob only if it was last written before `cutoff`; whether it was deleted.
    pub fn remove_if_written_before(
        &self,
        digest: &str,
        cutoff: std::time::SystemTime,
    ) -> Result<bool, BlobError> {
        let path = self.path(digest)?;
        let old = std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
        if old { self.remove(digest) } else { Ok(false) }
    }

    /// Blob digests whose file was last written before `cutoff`, and temporary files of
    /// interrupted writes older than that (their paths), at most `limit` in all.
    pub fn written_before(
        &self,
        cutoff: std::time::SystemTime,
        limit: usize,
    ) -> Result<(Vec<String>, Vec<PathBuf>), BlobError> {
        let (mut digests, mut temps) = (Vec::new(), Vec::new());
        let old = |e: &std::fs::DirEntry| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
        let dirs = |p: &Path| -> Result<Vec<std::fs::DirEntry>, BlobError> {
            match std::fs::read_dir(p) {
                Ok(rd) => Ok(rd.flatten().collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(BlobError::Io { path: p.to_owned(), source: e }),
            }
        };
        for a in dirs(&self.root)? {
            for b in dirs(&a.path())? {
                for f in dirs(&b.path())? {
                    if digests.len() + temps.len() >= limit {
                        return Ok((digests, temps));
                    }
                    let name = f.file_name().to_string_lossy().into_owned();
                    if !old(&f) {
                        continue;
                    }
                    if valid_digest(&name) {
                        digests.push(name);
                    } else if name.starts_with(".tmp-") {
                        temps.push(f.path());
                    }
                }
            }
        }
        Ok((digests, temps))
    }

    pub fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest)?;
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BlobError::NotFound(digest.to_owned()),
            _ => BlobError::Io { path, source: e },
        })
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.exists())
    }

    /// Deletes a blob; `false` if it was not there.
    pub fn remove(&self, digest: &str) -> Result<bool, BlobError> {
        let path = self.path(digest)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::Io { path, source: e }),
        }
    }
}

/// The approved baselines as plain files, easy to browse, back up or commit.
#[derive(Debug, Clone)]
pub struct BaselineFiles {
    dir: PathBuf,
}

impl BaselineFiles {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    pub fn path(&self, monitor: &MonitorName, viewport: &str) -> Result<PathBuf, BlobError> {
        if !valid_viewport(viewport) {
            return Err(BlobError::InvalidViewport);
        }
        Ok(self.dir.join(monitor.as_str()).join(format!("{viewport}.png")))
    }

    pub fn write(&self, monitor: &MonitorName, viewport: &str, png: &[u8]) -> Result<PathBuf, BlobError> {
        let path = self.path(monitor, viewport)?;
        write_atomic(&path, png)?;
        Ok(path)
    }

    /// `None` when there is no baseline file yet.
    pub fn read(&self, monitor: &MonitorName, viewport: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(monitor, viewport)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::Io { path, source: e }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobs::new(dir.path());
        let d = store.put(b"hello").unwrap();
        assert_eq!(d, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let p = store.path(&d).unwrap();
        assert!(p.ends_with(
            "blobs/sha256/2c/f2/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        ));
        assert_eq!(store.put(b"hello").unwrap(), d);
        assert_eq!(store.get(&d).unwrap(), b"hello");
        assert!(store.contains(&d));
        // No temp files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn bad_names_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobs::new(dir.path());
        assert!(matches!(store.get("../../etc/passwd"), Err(BlobError::InvalidDigest)));
        assert!(matches!(store.get(&"A".repeat(64)), Err(BlobError::InvalidDigest)));
        assert!(matches!(store.get(&"a".repeat(64)), Err(BlobError::NotFound(_))));
        let files = BaselineFiles::new(dir.path());
        let m: MonitorName = "home".parse().unwrap();
        for bad in ["../x", "1280x800/../../a", "", "x1280"] {
            assert!(matches!(files.path(&m, bad), Err(BlobError::InvalidViewport)), "{bad}");
        }
    }

    #[test]
    fn baseline_files_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let files = BaselineFiles::new(dir.path());
        let m: MonitorName = "home".parse().unwrap();
        assert_eq!(files.read(&m, "1280x800").unwrap(), None);
        let p = files.write(&m, "1280x800", b"one").unwrap();
        assert!(p.ends_with("home/1280x800.png"));
        files.write(&m, "1280x800", b"two").unwrap();
        assert_eq!(files.read(&m, "1280x800").unwrap().unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
