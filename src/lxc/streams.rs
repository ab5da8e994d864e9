//! The Incus simplestreams catalogue (`streams/v1/index.json` and
//! `images.json`) for a project's current snapshot: one product per plan,
//! with one version, the current snapshot's. Incus gives a product's
//! aliases to its newest version, so listing only the current one makes a
//! rollback take effect (once the host's one-hour catalogue cache expires).

use super::Entry;
use serde_json::{json, Value};

/// An entry with what Incus checks when it downloads it.
pub struct Listed {
    pub entry: Entry,
    /// SHA-256 (hex) and size of the generated `incus.tar.xz`.
    pub meta_sha256: String,
    pub meta_size: u64,
    /// SHA-256 (hex) of `incus.tar.xz` followed by the rootfs.
    pub fingerprint: String,
}

fn product_id(entry: &Entry) -> String {
    format!("{}:{}:default:{}", entry.project, entry.plan, entry.arch)
}

pub fn index(entries: &[Entry]) -> Value {
    let products: Vec<String> = entries.iter().map(product_id).collect();
    json!({
        "format": "index:1.0",
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "products": products,
            }
        }
    })
}

/// Version keys must start with `YYYYMMDD`; the snapshot's creation time.
pub fn version(entry: &Entry) -> String {
    entry
        .snapshot_created_at
        .format("%Y%m%d_%H%M%S")
        .to_string()
}

pub fn images(listed: &[Listed]) -> Value {
    let mut products = serde_json::Map::new();
    for l in listed {
        let e = &l.entry;
        let base = format!("images/{}/{}", e.snapshot_id, e.plan);
        let rootfs_sha256 = e.digest.strip_prefix("sha256:").unwrap_or(&e.digest);
        let product = json!({
            "aliases": format!("{}/{},{}", e.project, e.plan, e.plan),
            "arch": e.arch,
            "os": e.project,
            "release": e.plan,
            "release_title": e.plan,
            "variant": "default",
            "versions": {
                version(e): {
                    "items": {
                        "incus.tar.xz": {
                            "ftype": "incus.tar.xz",
                            "path": format!("{base}/incus.tar.xz"),
                            "sha256": l.meta_sha256,
                            "size": l.meta_size,
                            "combined_sha256": l.fingerprint,
                            "combined_rootxz_sha256": l.fingerprint,
                        },
                        "root.tar.xz": {
                            "ftype": "root.tar.xz",
                            "path": format!("{base}/rootfs.tar.xz"),
                            "sha256": rootfs_sha256,
                            "size": e.size,
                        }
                    }
                }
            }
        });
        products.insert(product_id(e), product);
    }
    json!({
        "content_id": "images",
        "datatype": "image-downloads",
        "format": "products:1.0",
        "products": products,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_has_one_dated_version_with_both_files_and_the_fingerprint() {
        let entry = super::super::tests::entry("debian-12", "amd64");
        let listed = Listed {
            entry: entry.clone(),
            meta_sha256: "11".repeat(32),
            meta_size: 300,
            fingerprint: "22".repeat(32),
        };
        let doc = images(&[listed]);
        let product = &doc["products"]["web:debian-12:default:amd64"];
        assert_eq!(product["aliases"], "web/debian-12,debian-12");
        let versions = product["versions"].as_object().expect("versions");
        assert_eq!(versions.len(), 1);
        let (key, version) = versions.iter().next().expect("one");
        assert_eq!(key, "20260921_141320");
        let meta = &version["items"]["incus.tar.xz"];
        assert_eq!(meta["combined_rootxz_sha256"], "22".repeat(32));
        assert_eq!(meta["path"], "images/0199-snap/debian-12/incus.tar.xz");
        assert_eq!(version["items"]["root.tar.xz"]["sha256"], "ab".repeat(32));
        let listed_products = &index(&[entry])["index"]["images"]["products"];
        assert_eq!(listed_products[0], "web:debian-12:default:amd64");
    }
}
