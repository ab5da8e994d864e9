//! Who may do what: roles, the principal a request acts as, and bearer
//! tokens. A token is `snapreg_<id>_<secret>`: 128 bits of id to find its
//! row, 256 random bits of secret of which only a SHA-256 is stored and
//! compared in constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use subtle::ConstantTimeEq;

/// Roles, each including the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every GET.
    Reader,
    /// + create snapshots and images, change their statuses, upload artifacts, heartbeats.
    Builder,
    /// + set and clear the current snapshot, plans, project settings.
    Maintainer,
    /// + everything else: projects, tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Builder, Role::Maintainer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Builder => "builder",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The caller a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the `actor` of events.
    pub name: String,
    pub role: Role,
    /// `None`: every project; otherwise only these project ids.
    pub projects: Option<HashSet<String>>,
}

impl Principal {
    pub fn may(&self, needed: Role) -> bool {
        self.role >= needed
    }

    pub fn sees(&self, project_id: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|p| p.contains(project_id))
    }

    pub fn is_scoped(&self) -> bool {
        self.projects.is_some()
    }
}

const PREFIX: &str = "snapreg_";

/// A new token: the text shown once, its id, and the hash to store.
pub struct NewSecret {
    pub token: String,
    pub id: String,
    pub secret_hash: String,
}

pub fn new_secret() -> Result<NewSecret, String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let secret = hex::encode(secret);
    let id = uuid::Uuid::now_v7();
    Ok(NewSecret {
        token: format!("{PREFIX}{}_{secret}", id.simple()),
        id: id.hyphenated().to_string(),
        secret_hash: hash_secret(&secret),
    })
}

/// The id and secret of a token's text, if it has the token's form.
pub fn parse_token(token: &str) -> Option<(String, String)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((id.hyphenated().to_string(), secret.to_owned()))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets (or their hashes) without leaking, through timing,
/// how much of them matched.
pub fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before() {
        let maintainer = Principal {
            name: "m".into(),
            role: Role::Maintainer,
            projects: None,
        };
        assert!(maintainer.may(Role::Reader) && maintainer.may(Role::Builder));
        assert!(maintainer.may(Role::Maintainer) && !maintainer.may(Role::Admin));
    }

    #[test]
    fn scopes_limit_projects() {
        let scoped = Principal {
            name: "s".into(),
            role: Role::Admin,
            projects: Some(HashSet::from(["p1".to_owned()])),
        };
        assert!(scoped.sees("p1") && !scoped.sees("p2"));
    }

    #[test]
    fn tokens_round_trip_and_only_hashes_are_kept() {
        let new = new_secret().expect("randomness");
        let (id, secret) = parse_token(&new.token).expect("parses");
        assert_eq!(id, new.id);
        assert_eq!(secret.len(), 64);
        assert!(same_secret(&hash_secret(&secret), &new.secret_hash));
        assert!(!new.token.contains(&new.secret_hash));
        assert!(parse_token("snapreg_nothex_abc").is_none());
        assert!(parse_token("Bearer x").is_none());
        assert_ne!(new_secret().map(|n| n.token).ok(), Some(new.token));
    }
}
