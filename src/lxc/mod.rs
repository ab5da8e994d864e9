//! What stock LXC and Incus hosts read, as pure functions of what the
//! registry holds: the `lxc-download` index and metadata tarball
//! (`index`, `metadata`), and the Incus simplestreams catalogue (`streams`).
//! Reading the rows is `registry::lxc`; the routes are `api::lxc`.

pub mod metadata;
pub mod streams;

/// One plan of a project's current snapshot, as a host sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub project: String,
    /// The plan's slug (a plan that borrows another plan's image is listed
    /// under its own slug, with the borrowed image).
    pub plan: String,
    pub arch: String,
    pub snapshot_id: String,
    pub snapshot_created_at: chrono::NaiveDateTime,
    pub image_id: String,
    pub digest: String,
    pub size: u64,
}

/// The lxc-download index files a host may ask for (`.7`: LXC 1.x's
/// compat suffix, which later versions still try first).
pub fn is_index_name(name: &str) -> bool {
    matches!(
        name,
        "index-system" | "index-user" | "index-system.7" | "index-user.7"
    )
}

/// The `lxc-download` index: `dist;release;arch;variant;build_id;path`
/// per line, the project as dist and the plan as release. The template
/// reads lines with `read`, which drops a last line without a newline.
pub fn index(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            format!(
                "{};{};{};default;{};/images/{}/{}\n",
                e.project, e.plan, e.arch, e.snapshot_id, e.snapshot_id, e.plan
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn entry(plan: &str, arch: &str) -> Entry {
        Entry {
            project: "web".into(),
            plan: plan.into(),
            arch: arch.into(),
            snapshot_id: "0199-snap".into(),
            snapshot_created_at: chrono::DateTime::from_timestamp(1_790_000_000, 0)
                .map(|t| t.naive_utc())
                .unwrap_or_default(),
            image_id: "0199-image".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 42,
        }
    }

    #[test]
    fn the_index_has_one_newline_terminated_line_per_plan() {
        let text = index(&[entry("debian-12", "amd64"), entry("i386", "i386")]);
        assert_eq!(
            text,
            "web;debian-12;amd64;default;0199-snap;/images/0199-snap/debian-12\n\
             web;i386;i386;default;0199-snap;/images/0199-snap/i386\n"
        );
    }

    #[test]
    fn only_the_four_index_names_are_served() {
        assert!(is_index_name("index-system.7") && is_index_name("index-user"));
        assert!(!is_index_name("index") && !is_index_name("index-system.8"));
    }
}
