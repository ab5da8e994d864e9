//! Prometheus metrics (`GET /metrics`). Labels are bounded: routes are
//! templates (`/v1/images/{image}`), never raw paths.

use crate::registry::storage::StorageFigures;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub db_connections: IntGaugeVec,
    pub status_transitions: IntCounterVec,
    pub artifact_bytes: IntCounterVec,
    pub watchdog_reclaims: IntCounter,
    pub gc_deletions: IntCounterVec,
    pub db_retries: IntCounter,
    pub held_checkpoints: Histogram,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("snapreg".into()), None)?;
    let http_requests = IntCounterVec::new(
        Opts::new(
            "http_requests_total",
            "HTTP requests by route template, method and status",
        ),
        &["route", "method", "status"],
    )?;
    let http_seconds = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]),
        &["route", "method", "status"],
    )?;
    let db_connections = IntGaugeVec::new(
        Opts::new(
            "db_pool_connections",
            "Database pool connections by state (in_use, idle)",
        ),
        &["state"],
    )?;
    let status_transitions = IntCounterVec::new(
        Opts::new(
            "status_transitions_total",
            "Status changes by kind (snapshot, image) and target status",
        ),
        &["kind", "to"],
    )?;
    let artifact_bytes = IntCounterVec::new(
        Opts::new(
            "artifact_bytes_total",
            "Artifact bytes received (in) and sent (out)",
        ),
        &["direction"],
    )?;
    let watchdog_reclaims = IntCounter::new(
        "watchdog_reclaims_total",
        "Pending images failed because their lease expired",
    )?;
    let gc_deletions = IntCounterVec::new(
        Opts::new(
            "gc_deletions_total",
            "Garbage collected by kind (blob, upload, temp_file)",
        ),
        &["what"],
    )?;
    let db_retries = IntCounter::new(
        "db_write_retries_total",
        "Write transactions run again after losing a race (deadlock, serialization failure, busy)",
    )?;
    let held_checkpoints = Histogram::with_opts(
        HistogramOpts::new(
            "sqlite_held_checkpoint_seconds",
            "SQLite checkpoint passes that held the writers so that the WAL restarts",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]),
    )?;
    registry.register(Box::new(db_retries.clone()))?;
    registry.register(Box::new(held_checkpoints.clone()))?;
    registry.register(Box::new(http_requests.clone()))?;
    registry.register(Box::new(http_seconds.clone()))?;
    registry.register(Box::new(db_connections.clone()))?;
    registry.register(Box::new(status_transitions.clone()))?;
    registry.register(Box::new(artifact_bytes.clone()))?;
    registry.register(Box::new(watchdog_reclaims.clone()))?;
    registry.register(Box::new(gc_deletions.clone()))?;
    Ok(Metrics {
        registry,
        http_requests,
        http_seconds,
        db_connections,
        status_transitions,
        artifact_bytes,
        watchdog_reclaims,
        gc_deletions,
        db_retries,
        held_checkpoints,
    })
}

/// The process's metrics. Building them can only fail on a programming
/// error (a duplicate or malformed name), caught by the first test.
pub static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| build().unwrap_or_else(|e| panic!("metric definitions are invalid: {e}")));

/// The storage gauges of one read of the database, in a registry of their
/// own: the database read at this scrape, not a value another scrape (of
/// another database, in tests) left in process-wide gauges.
fn storage_families(
    figures: &StorageFigures,
) -> Result<Vec<prometheus::proto::MetricFamily>, prometheus::Error> {
    let registry = Registry::new_custom(Some("snapreg".into()), None)?;
    let stored_bytes = IntGauge::new("stored_bytes", "Bytes of the blobs the database records")?;
    let stored_blobs = IntGauge::new("stored_blobs", "Blobs the database records")?;
    let reclaimable_bytes = IntGauge::new(
        "gc_reclaimable_bytes",
        "Bytes of blobs no image references (gc removes them once unused for its grace period)",
    )?;
    let upload_sessions = IntGauge::new("upload_sessions_open", "Resumable upload sessions open")?;
    let snapshots = IntGaugeVec::new(
        Opts::new(
            "snapshots",
            "Snapshots by project (the first 100 slugs; the rest as _other) and status",
        ),
        &["project", "status"],
    )?;
    let images = IntGaugeVec::new(
        Opts::new(
            "images",
            "Images by project (the first 100 slugs; the rest as _other) and status",
        ),
        &["project", "status"],
    )?;
    stored_bytes.set(figures.stored_bytes);
    stored_blobs.set(figures.blobs);
    reclaimable_bytes.set(figures.reclaimable_bytes);
    upload_sessions.set(figures.open_uploads);
    for (gauge, counts) in [(&snapshots, &figures.snapshots), (&images, &figures.images)] {
        for (project, status, n) in counts {
            gauge.with_label_values(&[project, status]).set(*n);
        }
    }
    for gauge in [
        &stored_bytes,
        &stored_blobs,
        &reclaimable_bytes,
        &upload_sessions,
    ] {
        registry.register(Box::new(gauge.clone()))?;
    }
    registry.register(Box::new(snapshots.clone()))?;
    registry.register(Box::new(images.clone()))?;
    Ok(registry.gather())
}

/// Renders every metric in the Prometheus text format, with the storage
/// gauges when the database answered.
pub fn render(storage: Option<&StorageFigures>) -> Result<String, prometheus::Error> {
    use prometheus::Encoder;
    let mut families = METRICS.registry.gather();
    if let Some(figures) = storage {
        families.extend(storage_families(figures)?);
    }
    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_metrics_build_and_render() {
        super::METRICS.watchdog_reclaims.inc_by(0);
        let text = super::render(None).unwrap_or_default();
        assert!(text.contains("snapreg_watchdog_reclaims_total"), "{text}");
    }
}
