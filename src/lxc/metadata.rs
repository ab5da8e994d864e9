//! The metadata tarballs snapreg generates beside an image's rootfs:
//! `meta.tar.xz` for the `lxc-download` template and `incus.tar.xz` for
//! Incus. Both are xz-compressed tar archives with fixed owners and times,
//! so the same inputs give the same bytes (Incus names an image by a hash
//! over them).

use super::Entry;
use std::io;

/// `meta.tar.xz`: `config` (and `config-user` for unprivileged
/// containers), `expiry` (a Unix time: the host uses its cached copy until
/// then, and afterwards reads the index again, re-downloading only if the
/// snapshot id there changed) and `create-message`.
pub fn lxc(entry: &Entry, source: Option<&str>, expiry_unix: i64) -> io::Result<Vec<u8>> {
    let config = format!(
        "lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = {}\n",
        entry.arch
    );
    let config_user = format!("{config}lxc.include = LXC_TEMPLATE_CONFIG/userns.conf\n");
    let message = format!(
        "Created from snapreg: project {}, plan {}, snapshot {}{}.\n",
        entry.project,
        entry.plan,
        entry.snapshot_id,
        source.map(|s| format!(" ({s})")).unwrap_or_default()
    );
    tar_xz(&[
        ("config", config.as_bytes()),
        ("config-user", config_user.as_bytes()),
        ("expiry", format!("{expiry_unix}\n").as_bytes()),
        ("create-message", message.as_bytes()),
    ])
}

/// The version of what `incus` generates: stored fingerprints name it, so
/// a change to the tarball (bump this) gets fingerprints of its own instead
/// of contradicting the stored ones.
pub const INCUS_FORMAT: i32 = 1;

/// `incus.tar.xz`: `metadata.yaml` naming the architecture. It depends
/// only on the artifact's digest and the architecture, so its bytes, and
/// the combined fingerprint over them and the rootfs, are fixed once the
/// artifact is committed.
pub fn incus(arch: &str, digest: &str) -> io::Result<Vec<u8>> {
    let yaml = format!(
        "architecture: {arch}\nproperties:\n  architecture: {arch}\n  description: snapreg image {digest}\n  os: snapreg\n"
    );
    tar_xz(&[("metadata.yaml", yaml.as_bytes())])
}

fn tar_xz(files: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *bytes)?;
    }
    let tar = builder.into_inner()?;
    let mut compressed = Vec::new();
    lzma_rs::xz_compress(&mut tar.as_slice(), &mut compressed)?;
    Ok(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(tar_xz: &[u8]) -> Vec<(String, String)> {
        let mut tar = Vec::new();
        lzma_rs::xz_decompress(&mut &tar_xz[..], &mut tar).expect("valid xz");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive.entries().expect("valid tar");
        entries
            .map(|e| {
                let mut e = e.expect("entry");
                let name = e.path().expect("path").display().to_string();
                let mut text = String::new();
                io::Read::read_to_string(&mut e, &mut text).expect("utf-8");
                (name, text)
            })
            .collect()
    }

    #[test]
    fn lxc_metadata_has_config_expiry_and_message() {
        let entry = super::super::tests::entry("debian-12", "arm64");
        let got = files(&lxc(&entry, Some("git:4f2a"), 1_800_000_060).expect("built"));
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["config", "config-user", "expiry", "create-message"]);
        assert!(got[0].1.contains("lxc.arch = arm64\n"));
        assert!(got[0]
            .1
            .starts_with("lxc.include = LXC_TEMPLATE_CONFIG/common.conf\n"));
        assert!(got[1].1.contains("userns.conf"));
        assert_eq!(got[2].1, "1800000060\n");
        assert!(got[3].1.contains("snapshot 0199-snap (git:4f2a)"));
    }

    #[test]
    fn incus_metadata_is_the_same_bytes_for_the_same_inputs() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        let first = incus("amd64", &digest).expect("built");
        assert_eq!(first, incus("amd64", &digest).expect("built"));
        assert_ne!(first, incus("arm64", &digest).expect("built"));
        let got = files(&first);
        assert_eq!(got[0].0, "metadata.yaml");
        assert!(got[0].1.starts_with("architecture: amd64\n"));
    }
}
