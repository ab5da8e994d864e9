//! Flags and environment → one `Config` value (API.md, "Running it").

use crate::blobs::{BlobLocation, S3Settings};
use crate::db::DatabaseUrl;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the service keeps its data; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Database: a postgres:// or postgresql:// URL selects PostgreSQL;
    /// anything else is a SQLite file path, optionally prefixed sqlite://
    /// [default: <data-dir>/snapreg.db]
    // `global`: `snapreg token create … --data-dir X` works too.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Holds the SQLite file, the artifact store and the bootstrap admin token.
    #[arg(
        long,
        env = "SNAPREG_DATA_DIR",
        default_value = "./snapreg-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// SQLite only: how long a write waits for another writer before its
    /// attempt counts as lost and is retried (5 attempts in all).
    #[arg(long, env = "SNAPREG_SQLITE_BUSY_TIMEOUT", default_value = "5s", value_parser = duration, global = true)]
    pub sqlite_busy_timeout: Duration,

    /// The artifact store: a folder, or s3://bucket[/prefix] for an
    /// S3-compatible bucket that replicas share (credentials from the usual
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)
    /// [default: <data-dir>/blobs]
    #[arg(long, env = "SNAPREG_BLOB_STORE", value_parser = blob_store, global = true)]
    pub blob_store: Option<BlobLocation>,

    /// The S3-compatible server's URL (e.g. http://127.0.0.1:9000); AWS when unset.
    #[arg(long, env = "SNAPREG_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    /// The bucket's region [default: AWS_REGION, else us-east-1].
    #[arg(long, env = "SNAPREG_S3_REGION", global = true)]
    pub s3_region: Option<String>,
}

/// Artifact housekeeping; shared by `serve` and `gc`.
#[derive(Debug, Clone, Args)]
pub struct ArtifactArgs {
    /// Upload sessions idle this long expire (e.g. 30m, 24h).
    #[arg(long, env = "SNAPREG_UPLOAD_EXPIRY", default_value = "24h", value_parser = duration)]
    pub upload_expiry: Duration,

    /// Blobs no image references are removed once unused this long.
    #[arg(long, env = "SNAPREG_GC_GRACE", default_value = "2h", value_parser = duration)]
    pub gc_grace: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "SNAPREG_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    #[command(flatten)]
    pub storage: StorageArgs,

    /// Most database connections the service keeps open.
    #[arg(long, env = "SNAPREG_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,

    #[command(flatten)]
    pub artifacts: ArtifactArgs,

    /// A pending image whose last heartbeat is older than this is failed.
    #[arg(long, env = "SNAPREG_LEASE_TIMEOUT", default_value = "30m", value_parser = duration)]
    pub lease_timeout: Duration,

    /// How often the watchdog looks for expired leases (0s turns it off).
    #[arg(long, env = "SNAPREG_WATCHDOG_INTERVAL", default_value = "30s", value_parser = duration)]
    pub watchdog_interval: Duration,

    /// A bearer token with every right (in addition to stored tokens).
    #[arg(long, env = "SNAPREG_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Let requests without a token read (GET and HEAD).
    #[arg(long, env = "SNAPREG_ANONYMOUS_READ", default_value_t = false)]
    pub anonymous_read: bool,

    /// `/metrics` without a token (otherwise it needs a reader token).
    #[arg(long, env = "SNAPREG_METRICS_OPEN", default_value_t = false)]
    pub metrics_open: bool,

    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    #[arg(long, env = "SNAPREG_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// How often `serve` collects garbage (0s turns the loop off).
    #[arg(long, env = "SNAPREG_GC_INTERVAL", default_value = "1h", value_parser = duration)]
    pub gc_interval: Duration,

    /// A request body that sends nothing for this long is cut off (408).
    #[arg(long, env = "SNAPREG_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub body_idle_timeout: Duration,

    /// Artifact uploads that may stream at once; more answer 503 with Retry-After.
    #[arg(long, env = "SNAPREG_MAX_UPLOADS", default_value_t = 64)]
    pub max_uploads: usize,

    /// S3 only: answer artifact downloads with a redirect (307) to a
    /// presigned URL valid this long, so bytes bypass the service (0s: the
    /// service streams them itself).
    #[arg(long, env = "SNAPREG_DOWNLOAD_REDIRECT", default_value = "0s", value_parser = presign_duration)]
    pub download_redirect: Duration,

    /// Events older than this are removed (in the retention round, every
    /// gc interval); a feed cursor before the oldest kept event is then
    /// answered 410 cursor_expired [default: keep every event].
    #[arg(long, env = "SNAPREG_EVENT_RETENTION", value_parser = duration)]
    pub event_retention: Option<Duration>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "SNAPREG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SNAPREG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The `expiry` written into LXC image metadata: how long an LXC host
    /// uses its cached image before it reads the index again.
    #[arg(long, env = "SNAPREG_LXC_EXPIRY", default_value = "60s", value_parser = duration)]
    pub lxc_expiry: Duration,
}

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub database_url: DatabaseUrl,
    pub data_dir: PathBuf,
    pub blob_location: BlobLocation,
    pub pool_size: u32,
    pub sqlite_busy_timeout: Duration,
    pub upload_expiry: Duration,
    pub gc_grace: Duration,
    /// `None`: no garbage collection loop.
    pub gc_interval: Option<Duration>,
    pub lease_timeout: Duration,
    /// `None`: no watchdog.
    pub watchdog_interval: Option<Duration>,
    pub admin_token: Option<String>,
    pub anonymous_read: bool,
    pub metrics_open: bool,
    pub shutdown_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_uploads: usize,
    /// `None`: downloads stream through the service.
    pub download_redirect: Option<Duration>,
    /// `None`: events are kept forever.
    pub event_retention: Option<Duration>,
    /// An event stream sends a comment after this long without an event.
    pub stream_keepalive: Duration,
    /// `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    pub lxc_expiry: Duration,
}

impl Config {
    /// Defaults for everything but where the data lives (tests, embedding).
    pub fn new(bind: impl Into<String>, database_url: DatabaseUrl, data_dir: PathBuf) -> Config {
        Config {
            bind: bind.into(),
            database_url,
            blob_location: BlobLocation::Dir(data_dir.join("blobs")),
            data_dir,
            pool_size: 16,
            sqlite_busy_timeout: crate::db::SQLITE_BUSY_TIMEOUT,
            upload_expiry: Duration::from_secs(24 * 3600),
            gc_grace: Duration::from_secs(2 * 3600),
            gc_interval: Some(Duration::from_secs(3600)),
            lease_timeout: Duration::from_secs(30 * 60),
            watchdog_interval: Some(Duration::from_secs(30)),
            admin_token: None,
            anonymous_read: false,
            metrics_open: false,
            shutdown_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            max_uploads: 64,
            download_redirect: None,
            event_retention: None,
            stream_keepalive: STREAM_KEEPALIVE,
            tls: None,
            lxc_expiry: Duration::from_secs(60),
        }
    }
}

impl StorageArgs {
    pub fn database_url(&self) -> DatabaseUrl {
        match &self.database_url {
            Some(url) if !url.is_empty() => DatabaseUrl::parse(url),
            _ => DatabaseUrl::Sqlite(self.data_dir.join("snapreg.db")),
        }
    }

    pub fn blob_location(&self) -> BlobLocation {
        match &self.blob_store {
            None => BlobLocation::Dir(self.data_dir.join("blobs")),
            Some(BlobLocation::S3(s3)) => BlobLocation::S3(S3Settings {
                endpoint: self.s3_endpoint.clone().filter(|e| !e.is_empty()),
                region: self.s3_region.clone().filter(|r| !r.is_empty()),
                ..s3.clone()
            }),
            Some(dir) => dir.clone(),
        }
    }
}

/// `--blob-store`: `s3://bucket[/prefix]` or a folder.
fn blob_store(text: &str) -> Result<BlobLocation, String> {
    if text.starts_with("s3://") {
        return S3Settings::parse(text).map(BlobLocation::S3);
    }
    match text.contains("://") {
        true => Err(format!("{text:?}: only s3:// URLs and folders are stores")),
        false => Ok(BlobLocation::Dir(PathBuf::from(text))),
    }
}

impl From<ServeArgs> for Config {
    fn from(args: ServeArgs) -> Config {
        Config {
            bind: args.bind,
            database_url: args.storage.database_url(),
            blob_location: args.storage.blob_location(),
            data_dir: args.storage.data_dir,
            pool_size: args.pool_size.max(1),
            sqlite_busy_timeout: args.storage.sqlite_busy_timeout,
            upload_expiry: args.artifacts.upload_expiry,
            gc_grace: args.artifacts.gc_grace,
            gc_interval: Some(args.gc_interval).filter(|i| !i.is_zero()),
            lease_timeout: args.lease_timeout,
            watchdog_interval: Some(args.watchdog_interval).filter(|i| !i.is_zero()),
            admin_token: args.admin_token.filter(|t| !t.is_empty()),
            anonymous_read: args.anonymous_read,
            metrics_open: args.metrics_open,
            shutdown_timeout: args.shutdown_timeout,
            body_idle_timeout: Some(args.body_idle_timeout)
                .filter(|t| !t.is_zero())
                .unwrap_or(Duration::from_secs(30)),
            max_uploads: args.max_uploads.max(1),
            download_redirect: Some(args.download_redirect).filter(|d| !d.is_zero()),
            event_retention: args.event_retention.filter(|d| !d.is_zero()),
            stream_keepalive: STREAM_KEEPALIVE,
            tls: args
                .tls_cert
                .zip(args.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            lxc_expiry: args.lxc_expiry,
        }
    }
}

/// API.md: a stream sends a comment at least every 15 s, which also keeps
/// proxies from closing an idle one.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

/// The longest duration a setting takes: longer ones are typos (and would
/// overflow date arithmetic), refused at start-up with this message.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration flag: `2s`, `30m`, `1h`, `7d`; at most 100 years.
pub fn duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if parsed > LONGEST {
        return Err(format!("{text} is longer than 100 years"));
    }
    Ok(parsed)
}

/// `--download-redirect`: off (`0s`), or what S3 signs: 1 s to 7 days.
fn presign_duration(text: &str) -> Result<Duration, String> {
    let parsed = duration(text)?;
    let (shortest, longest) = (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));
    if !parsed.is_zero() && (parsed < shortest || parsed > longest) {
        return Err(format!(
            "{text}: a presigned URL is valid for 1s to 7d (0s turns redirects off)"
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::{duration, presign_duration};
    use std::time::Duration;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(duration("99y").is_ok());
        assert!(duration("101y").is_err_and(|e| e.contains("100 years")));
        assert!(duration("9999999999999999999h").is_err());
        assert!(duration("soon").is_err());
    }

    #[test]
    fn presigned_urls_last_what_s3_signs() {
        assert_eq!(presign_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(presign_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(presign_duration("500ms").is_err());
        assert!(presign_duration("8d").is_err_and(|e| e.contains("7d")));
    }
}
