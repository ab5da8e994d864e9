//! Validated input: slugs, references to projects and plans, and bounded
//! strings. Request bodies deserialize straight into these, so a handler
//! never sees a raw string that breaks a rule of API.md.

use serde::{Deserialize, Deserializer};
use uuid::Uuid;

pub const NAME_MAX: usize = 200;
pub const SOURCE_MAX: usize = 1024;
pub const BUILD_ID_MAX: usize = 200;
pub const JOB_ID_MAX: usize = 200;
pub const SLUG_MAX: usize = 63;
pub const LOG_TAIL_MAX_BYTES: usize = 4096;

/// `^[a-z0-9][a-z0-9._-]{0,62}$`, and never the form of a UUID (so a path
/// segment is unambiguously one or the other).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Slug, String> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !rest_ok || s.len() > SLUG_MAX {
            return Err(format!(
                "invalid slug {s:?}: must match ^[a-z0-9][a-z0-9._-]{{0,62}}$"
            ));
        }
        if Uuid::try_parse(s).is_ok() {
            return Err(format!(
                "invalid slug {s:?}: must not have the form of a UUID"
            ));
        }
        Ok(Slug(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Slug::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An architecture as LXC and Debian name it (`amd64`, `arm64`, `i386`,
/// `ppc64el`…): `^[a-z0-9][a-z0-9_]{0,31}$`. It is written into the LXC
/// index, whose fields are separated by `;`, so the set is kept narrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch(String);

impl Arch {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut chars = s.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && s.len() <= 32;
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "invalid arch {s:?}: must match ^[a-z0-9][a-z0-9_]{{0,31}} (amd64, arm64, i386…)"
            )));
        }
        Ok(Arch(s))
    }
}

/// A reference to a project or plan: its id or its slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ref {
    Id(String),
    Slug(Slug),
}

impl Ref {
    /// `None` when the text is neither a UUID nor a valid slug, which
    /// therefore names nothing.
    pub fn parse(s: &str) -> Option<Ref> {
        match Uuid::try_parse(s) {
            Ok(id) => Some(Ref::Id(id.hyphenated().to_string())),
            Err(_) => Slug::parse(s).ok().map(Ref::Slug),
        }
    }
}

/// A resource id (snapshot, image): canonical hyphenated lowercase UUID text,
/// or `None` when the text is not a UUID at all.
pub fn parse_id(s: &str) -> Option<String> {
    Uuid::try_parse(s)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// A string of at most `MAX` characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<const MAX: usize>(pub String);

impl<'de, const MAX: usize> Deserialize<'de> for Bounded<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            // PostgreSQL text cannot hold NUL; refuse it on every backend alike.
            return Err(serde::de::Error::custom("string contains a NUL character"));
        }
        if s.chars().count() > MAX {
            return Err(serde::de::Error::custom(format!(
                "string of {} characters is over the limit of {MAX}",
                s.chars().count()
            )));
        }
        Ok(Bounded(s))
    }
}

impl<const MAX: usize> Bounded<MAX> {
    pub fn into_inner(self) -> String {
        self.0
    }
}

pub type Name = Bounded<NAME_MAX>;
pub type Source = Bounded<SOURCE_MAX>;
pub type BuildId = Bounded<BUILD_ID_MAX>;
pub type JobId = Bounded<JOB_ID_MAX>;

/// The end of a build's log, at most 4096 bytes of UTF-8 (bytes, not
/// characters: it is a buffer the builder fills).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail(pub String);

impl<'de> Deserialize<'de> for LogTail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains('\0') {
            return Err(serde::de::Error::custom(
                "log_tail contains a NUL character",
            ));
        }
        if s.len() > LOG_TAIL_MAX_BYTES {
            return Err(serde::de::Error::custom(format!(
                "log_tail of {} bytes is over the limit of {LOG_TAIL_MAX_BYTES}",
                s.len()
            )));
        }
        Ok(LogTail(s))
    }
}

/// For optional fields where `null` means "clear" and absence "leave as is":
/// `#[serde(default, deserialize_with = "input::nullable")]` on an
/// `Option<Option<T>>`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_pattern() {
        for ok in ["a", "0", "web-app", "debian.12_x86-64", &"a".repeat(63)] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "A", "a b", "ä", &"a".repeat(64), "a/b"] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_never_look_like_uuids() {
        assert!(Slug::parse("0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b").is_err());
        assert!(Slug::parse("0193a2b45c6d7e8f9a0b1c2d3e4f5a6b").is_err());
    }

    #[test]
    fn bounded_strings_refuse_nul_and_overlong_text() {
        let parse = |json: &str| serde_json::from_str::<Bounded<3>>(json).map(|b| b.0);
        assert_eq!(parse(r#""äöü""#).ok(), Some("äöü".to_owned()));
        assert!(parse(r#""abcd""#).is_err());
        assert!(parse(r#""a\u0000""#).is_err());
    }

    #[test]
    fn refs_normalise_uuids_and_reject_garbage() {
        assert_eq!(
            Ref::parse("0193A2B45C6D7E8F9A0B1C2D3E4F5A6B"),
            Some(Ref::Id("0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b".into()))
        );
        assert_eq!(Ref::parse("web"), Some(Ref::Slug(Slug("web".into()))));
        assert_eq!(Ref::parse("Not A Slug"), None);
    }
}
