//! Blobs in an S3-compatible bucket (`storage.blobs: s3://bucket/prefix`), through the
//! `object_store` crate: `<prefix>/sha256/ab/cd/abcd…`, the file layout's keys. Every replica
//! reads and writes the same bucket, so a capture stored by one is served, judged and approved
//! by any other, and no replica needs another's disk.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::blobs::{BlobError, sha256_hex, valid_digest};
use crate::config::S3Location;

/// One request's longest wait; the client retries a failed request (with backoff) for at most
/// [`RETRY_FOR`], then the caller's own retry schedule takes over. Kept well inside the leases
/// of the work that stores images (a capture job's, a processed result's 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_FOR: Duration = Duration::from_secs(10);
/// An object of the same size written this recently is not uploaded again: in one process the
/// capture worker stores a capture and the processor stores the same bytes seconds later. An
/// older one is, to renew its time for the orphan sweep (whose cutoff is an hour back at least).
const FRESH: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/sha256`.
    root: Path,
    location: String,
}

impl ObjectBlobs {
    /// An S3 bucket, with what `storage.s3` leaves out read from the `AWS_*` environment.
    pub fn s3(s3: &S3Location) -> Result<Self, String> {
        use object_store::aws::AmazonS3Builder;
        use object_store::{BackoffConfig, ClientOptions, RetryConfig};

        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
        }
        // Plain HTTP only to an endpoint that says so (here or in `AWS_ENDPOINT`), or with
        // `AWS_ALLOW_HTTP=true`.
        let env_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"].iter().find_map(|k| std::env::var(k).ok());
        let endpoint = s3.endpoint.as_ref().map(|u| u.as_str().to_owned()).or(env_endpoint);
        let allow_http = endpoint.is_some_and(|e| e.starts_with("http://"))
            || std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let options = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_allow_http(allow_http);
        let retry =
            RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: RETRY_FOR };
        let store = builder
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| format!("storage.blobs s3://{}: {e}", s3.bucket))?;
        let location = if s3.prefix.is_empty() {
            format!("s3://{}", s3.bucket)
        } else {
            format!("s3://{}/{}", s3.bucket, s3.prefix)
        };
        Ok(Self::new(Arc::new(store), &s3.prefix, location))
    }

    /// Blobs under `prefix` in any object store (the tests use an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, location: String) -> Self {
        let root = Path::from(prefix).join("sha256");
        Self { store, root, location }
    }

    pub fn location(&self) -> String {
        self.location.clone()
    }

    fn key(&self, digest: &str) -> Result<Path, BlobError> {
        if !valid_digest(digest) {
            return Err(BlobError::InvalidDigest);
        }
        Ok(self.root.clone().join(&digest[0..2]).join(&digest[2..4]).join(digest))
    }

    /// Writes the object whole (S3 puts are atomic), again if it was there but not within
    /// [`FRESH`]: that renews its last-modified time, which the orphan sweep goes by.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<String, BlobError> {
        let digest = sha256_hex(&bytes);
        let key = self.key(&digest)?;
        if let Ok(meta) = self.store.head(&key).await
            && meta.size == bytes.len() as u64
            && SystemTime::from(meta.last_modified).elapsed().is_ok_and(|age| age < FRESH)
        {
            return Ok(digest);
        }
        self.store.put(&key, PutPayload::from(bytes)).await.map_err(BlobError::Object)?;
        Ok(digest)
    }

    pub async fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let key = self.key(digest)?;
        let found = match self.store.get(&key).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound(digest.to_owned())),
            Err(e) => return Err(BlobError::Object(e)),
        };
        Ok(found.bytes().await.map_err(BlobError::Object)?.to_vec())
    }

    pub async fn exists(&self, digest: &str) -> Result<bool, BlobError> {
        match self.store.head(&self.key(digest)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::Object(e)),
        }
    }

    /// Deletes a blob (only one last written before `cutoff`, when given); whether it did.
    pub async fn remove(&self, digest: &str, cutoff: Option<SystemTime>) -> Result<bool, BlobError> {
        let key = self.key(digest)?;
        let meta = match self.store.head(&key).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(BlobError::Object(e)),
        };
        if cutoff.is_some_and(|c| SystemTime::from(meta.last_modified) >= c) {
            return Ok(false);
        }
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::Object(e)),
        }
    }

    /// Whether the bucket answers a listing of the prefix (one page, whatever it holds).
    pub async fn check(&self) -> Result<(), BlobError> {
        match self.store.list(Some(&self.root)).next().await {
            Some(Err(e)) => Err(BlobError::Object(e)),
            _ => Ok(()),
        }
    }

    /// Digests of the blobs last written before `cutoff`, at most `limit` (the whole prefix is
    /// listed, a thousand keys a request, until that many are found).
    pub async fn written_before(&self, cutoff: SystemTime, limit: usize) -> Result<Vec<String>, BlobError> {
        let mut listing = self.store.list(Some(&self.root));
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(meta) = listing.next().await else { break };
            let meta = meta.map_err(BlobError::Object)?;
            let Some(name) = meta.location.filename() else { continue };
            if valid_digest(name) && SystemTime::from(meta.last_modified) < cutoff {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> ObjectBlobs {
        ObjectBlobs::new(Arc::new(object_store::memory::InMemory::new()), "vigil/blobs", "memory".into())
    }

    #[tokio::test]
    async fn objects_take_the_file_layout_under_the_prefix() {
        let blobs = memory();
        let digest = blobs.put(b"hello".to_vec()).await.unwrap();
        assert_eq!(digest, sha256_hex(b"hello"));
        let listed: Vec<String> =
            blobs.store.list(None).map(|m| m.unwrap().location.to_string()).collect::<Vec<_>>().await;
        assert_eq!(listed, [format!("vigil/blobs/sha256/2c/f2/{digest}")]);
        assert_eq!(blobs.get(&digest).await.unwrap(), b"hello");
        let written = blobs.store.head(&blobs.key(&digest).unwrap()).await.unwrap().last_modified;
        assert_eq!(blobs.put(b"hello".to_vec()).await.unwrap(), digest, "storing again is the same blob");
        let after = blobs.store.head(&blobs.key(&digest).unwrap()).await.unwrap().last_modified;
        assert_eq!(written, after, "a blob written moments ago is not uploaded again");
    }

    #[tokio::test]
    async fn missing_and_malformed_digests_are_told_apart() {
        let blobs = memory();
        assert!(matches!(blobs.get(&"a".repeat(64)).await, Err(BlobError::NotFound(_))));
        assert!(matches!(blobs.get("../../etc/passwd").await, Err(BlobError::InvalidDigest)));
        assert!(!blobs.remove(&"a".repeat(64), None).await.unwrap(), "nothing to delete");
    }

    #[tokio::test]
    async fn only_blobs_written_before_the_cutoff_are_swept() {
        let blobs = memory();
        let old = blobs.put(b"old".to_vec()).await.unwrap();
        let before = SystemTime::now() + Duration::from_secs(1);
        assert_eq!(blobs.written_before(before, 10).await.unwrap(), vec![old.clone()]);
        assert!(blobs.written_before(SystemTime::UNIX_EPOCH, 10).await.unwrap().is_empty());
        assert!(
            !blobs.remove(&old, Some(SystemTime::UNIX_EPOCH)).await.unwrap(),
            "written after the cutoff: kept"
        );
        assert!(blobs.remove(&old, Some(before)).await.unwrap());
        assert!(matches!(blobs.get(&old).await, Err(BlobError::NotFound(_))));
    }
}
