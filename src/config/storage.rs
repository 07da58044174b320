//! The `storage` section: the database, the directories, and where images live.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::ctx::{Ctx, Fields};
use super::model::{BlobLocation, MinFree, S3Location, Secret, StorageConfig};
use super::node::Node;
use super::values::{duration, free_space, integer, text};
use super::{DEFAULT_DATABASE_URL, or_default};

pub(super) fn storage(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Option<StorageConfig> {
    let database_url = or_default(ctx, f, "database_url", DEFAULT_DATABASE_URL.to_owned(), |ctx, n, p| {
        let s = text(ctx, n, p)?;
        let ok = ["sqlite:", "postgres://", "postgresql://"].iter().any(|pre| s.starts_with(pre));
        if !ok {
            ctx.error(n.pos, p, "expected a database URL starting with sqlite:// or postgres://");
            return None;
        }
        Some(s)
    });
    let data_dir =
        or_default(ctx, f, "data_dir", PathBuf::from("data"), |ctx, n, p| text(ctx, n, p).map(PathBuf::from));
    let baselines_dir = or_default(ctx, f, "baselines_dir", PathBuf::from("baselines"), |ctx, n, p| {
        text(ctx, n, p).map(PathBuf::from)
    });
    let blobs = f.opt("blobs").map(|n| {
        let p = f.path("blobs");
        (blob_url(ctx, n, &p), n, p)
    });
    let s3 = f.opt("s3").map(|n| {
        let p = f.path("s3");
        (s3_settings(ctx, n, &p), n, p)
    });
    let max_connections =
        or_default(ctx, f, "max_connections", 10, |ctx, n, p| integer(ctx, n, p, 1, 1000).map(|v| v as u32));
    let retention = or_default(ctx, f, "retention", Duration::from_secs(30 * 24 * 3600), |ctx, n, p| {
        duration(ctx, n, p, Duration::from_secs(3600), Duration::from_secs(10 * 365 * 24 * 3600))
    });
    let min_free = or_default(ctx, f, "min_free", MinFree::Default, free_space);
    f.finish(
        ctx,
        &[
            "database_url",
            "data_dir",
            "baselines_dir",
            "blobs",
            "s3",
            "max_connections",
            "retention",
            "min_free",
        ],
    );
    let data_dir = data_dir?;
    let blobs = match (blobs, s3) {
        (None, None) => BlobLocation::Files(data_dir.join("blobs")),
        (None, Some((_, n, p))) => {
            ctx.error(n.pos, &p, "storage.s3 is only read with `blobs: s3://bucket/prefix`");
            return None;
        }
        (Some((Blobs::Files(dir), _, _)), None) => BlobLocation::Files(dir),
        (Some((Blobs::Files(_), _, _)), Some((_, n, p))) => {
            ctx.error(
                n.pos,
                &p,
                "storage.s3 is only read with `blobs: s3://bucket/prefix`, not a file:// location",
            );
            return None;
        }
        (Some((Blobs::S3 { bucket, prefix }, _, _)), s3) => {
            let settings = match s3 {
                Some((settings, _, _)) => settings?,
                None => S3Settings::default(),
            };
            BlobLocation::S3(S3Location {
                bucket,
                prefix,
                endpoint: settings.endpoint,
                region: settings.region,
                access_key_id: settings.access_key_id,
                secret_access_key: settings.secret_access_key,
            })
        }
        (Some((Blobs::Invalid, _, _)), _) => return None,
    };
    Some(StorageConfig {
        database_url: Secret::new(database_url?),
        data_dir,
        baselines_dir: baselines_dir?,
        blobs,
        max_connections: max_connections?,
        retention: retention?,
        min_free: min_free?,
    })
}

enum Blobs {
    Files(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    /// Already reported.
    Invalid,
}

/// `file://<dir>` (an absolute `file:///srv/vigil/blobs` or a relative `file://data/blobs`) or
/// `s3://<bucket>[/<prefix>]`.
fn blob_url(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Blobs {
    const WHAT: &str = "a blob location like \"file:///var/lib/vigil/blobs\" or \"s3://bucket/prefix\"";
    let Some(s) = text(ctx, n, p) else { return Blobs::Invalid };
    let s = s.trim();
    if let Some(dir) = s.strip_prefix("file://") {
        if dir.is_empty() {
            ctx.expected(n, p, WHAT);
            return Blobs::Invalid;
        }
        return Blobs::Files(PathBuf::from(dir));
    }
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's own rule for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.split('/').all(|seg| {
            prefix.is_empty() || (!seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
        });
        if !bucket_ok || !prefix_ok {
            ctx.error(
                n.pos,
                p,
                "expected s3://<bucket>/<prefix> with a bucket of 3 to 63 lowercase letters, digits, dots or hyphens and a prefix of plain path segments",
            );
            return Blobs::Invalid;
        }
        return Blobs::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned() };
    }
    ctx.expected(n, p, WHAT);
    Blobs::Invalid
}

#[derive(Default)]
struct S3Settings {
    endpoint: Option<Url>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
}

/// `storage.s3`: the settings an S3-compatible store needs beyond its bucket. Each one left out
/// is read from the usual `AWS_*` environment variables when vigil starts.
fn s3_settings(ctx: &mut Ctx<'_>, n: &Node, p: &str) -> Option<S3Settings> {
    let mut f = Fields::of(ctx, n, p)?;
    let endpoint = f.opt("endpoint").map(|n| {
        let p = f.path("endpoint");
        let url = text(ctx, n, &p).and_then(|s| Url::parse(s.trim()).ok());
        match url {
            Some(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            _ => {
                ctx.expected(n, &p, "an http:// or https:// URL like \"https://s3.eu-west-1.amazonaws.com\"");
                None
            }
        }
    });
    let mut plain = |key: &str| f.opt(key).map(|n| text(ctx, n, &f.path(key)));
    let region = plain("region");
    let access_key_id = plain("access_key_id");
    let secret_access_key = plain("secret_access_key");
    f.finish(ctx, &["endpoint", "region", "access_key_id", "secret_access_key"]);
    let invalid = matches!(endpoint, Some(None))
        || [&region, &access_key_id, &secret_access_key].iter().any(|v| matches!(v, Some(None)));
    if invalid {
        return None;
    }
    Some(S3Settings {
        endpoint: endpoint.flatten(),
        region: region.flatten(),
        access_key_id: access_key_id.flatten(),
        secret_access_key: secret_access_key.flatten().map(Secret::new),
    })
}
