//! What kind of failure a database error is, decided once where the error
//! comes out of diesel, so that the write transaction can retry what is
//! worth retrying and the API can answer `503` instead of `500`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The class of a database failure that is not the client's doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The transaction lost to a concurrent one (PostgreSQL deadlock
    /// `40P01` or serialization failure `40001`, SQLite busy or locked, a
    /// foreign key to a row a concurrent transaction deleted): running it
    /// again can succeed, or finds the row gone.
    Contention,
    /// The server or the connection is gone (refused, closed, terminated,
    /// shutting down, a read-only standby): `503` until it is back.
    Unavailable,
    /// Anything else: a bug.
    Other,
}

impl DbErrorKind {
    /// The label of the retry metric and of log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            DbErrorKind::Contention => "contention",
            DbErrorKind::Unavailable => "unavailable",
            DbErrorKind::Other => "other",
        }
    }
}

/// Primary messages of errors diesel reports as `Unknown`. Diesel keeps
/// the SQLSTATE only for a few classes (40001 among them, 40P01 not), so
/// the rest is recognised by the server's message. PostgreSQL translates
/// messages when `lc_messages` is not English; then a deadlock is a `500`
/// again, which the lock order (registry::lookup) makes a bug anyway.
const CONTENTION: &[&str] = &[
    "deadlock detected",
    "could not serialize access",
    "database is locked",
    "database table is locked",
];
const UNAVAILABLE: &[&str] = &[
    "terminating connection",
    "the database system is",
    "server closed the connection",
    "no connection to the server",
    "connection to server",
    "could not connect",
    "could not receive data",
    "could not send data",
    "canceling statement due to conflict with recovery",
];

/// The kind of a diesel error.
pub fn classify(error: &DieselError) -> DbErrorKind {
    match error {
        DieselError::DatabaseError(kind, info) => match kind {
            // Every insert references rows the transaction just found: a
            // missing one was deleted by a concurrent transaction, and the
            // next attempt finds it gone (a 404).
            DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ForeignKeyViolation => {
                DbErrorKind::Contention
            }
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::ReadOnlyTransaction => DbErrorKind::Unavailable,
            _ => classify_message(info.message()),
        },
        // A rollback that failed leaves the connection unusable; the pool
        // drops it (`R2D2Connection::is_broken`).
        DieselError::BrokenTransactionManager => DbErrorKind::Unavailable,
        // Whether the commit happened is not known: never retried.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => match classify(commit_error) {
            DbErrorKind::Other => DbErrorKind::Other,
            _ => DbErrorKind::Unavailable,
        },
        _ => DbErrorKind::Other,
    }
}

fn classify_message(message: &str) -> DbErrorKind {
    let message = message.to_ascii_lowercase();
    if CONTENTION.iter().any(|m| message.contains(m)) {
        DbErrorKind::Contention
    } else if UNAVAILABLE.iter().any(|m| message.contains(m)) {
        DbErrorKind::Unavailable
    } else {
        DbErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(message: &str) -> DieselError {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()))
    }

    #[test]
    fn lost_races_are_contention() {
        for message in [
            "deadlock detected",
            "could not serialize access due to concurrent update",
            "database is locked",
            "database table is locked: snapshots",
        ] {
            assert_eq!(
                classify(&unknown(message)),
                DbErrorKind::Contention,
                "{message}"
            );
        }
        let serialization = DieselError::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new(String::new()),
        );
        assert_eq!(classify(&serialization), DbErrorKind::Contention);
        let deleted_meanwhile = DieselError::DatabaseError(
            DatabaseErrorKind::ForeignKeyViolation,
            Box::new(String::new()),
        );
        assert_eq!(classify(&deleted_meanwhile), DbErrorKind::Contention);
    }

    #[test]
    fn a_server_that_went_away_is_unavailable() {
        for message in [
            "terminating connection due to administrator command",
            "the database system is shutting down",
            "server closed the connection unexpectedly",
        ] {
            assert_eq!(
                classify(&unknown(message)),
                DbErrorKind::Unavailable,
                "{message}"
            );
        }
        let closed = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new(String::new()),
        );
        assert_eq!(classify(&closed), DbErrorKind::Unavailable);
        assert_eq!(
            classify(&DieselError::BrokenTransactionManager),
            DbErrorKind::Unavailable
        );
    }

    #[test]
    fn everything_else_is_a_bug() {
        assert_eq!(
            classify(&unknown("syntax error at or near")),
            DbErrorKind::Other
        );
        assert_eq!(classify(&DieselError::NotFound), DbErrorKind::Other);
    }
}
