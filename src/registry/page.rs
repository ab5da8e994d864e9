//! Keyset pagination: `?limit=` and an opaque `?cursor=` naming the last item
//! of the previous page by its `(created_at, id)` (or, in a pointer's
//! history, its `(at, seq)`).

use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Datelike, NaiveDateTime};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: NaiveDateTime,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let micros = self.at.and_utc().timestamp_micros();
        URL_SAFE_NO_PAD.encode(format!("{micros}/{}", self.id))
    }

    pub fn decode(text: &str) -> Result<Cursor> {
        let garbled = || Error::BadRequest(format!("invalid cursor {text:?}"));
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| garbled())?;
        let decoded = String::from_utf8(bytes).map_err(|_| garbled())?;
        let (micros, id) = decoded.split_once('/').ok_or_else(garbled)?;
        let micros: i64 = micros.parse().map_err(|_| garbled())?;
        let at = DateTime::from_timestamp_micros(micros)
            .filter(|at| (1..=9999).contains(&at.year()))
            .ok_or_else(garbled)?;
        let id = match id.parse::<u64>() {
            Ok(seq) => seq.to_string(),
            Err(_) => crate::input::parse_id(id).ok_or_else(garbled)?,
        };
        Ok(Cursor {
            at: at.naive_utc(),
            id,
        })
    }
}

/// Which page of a list to read.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn new(limit: Option<i64>, cursor: Option<&str>) -> Result<PageRequest> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}, got {limit}"
            )));
        }
        // An empty cursor is the first page, as if none were given.
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        Ok(PageRequest { limit, after })
    }

    /// The seq a history page starts after.
    pub fn after_seq(&self) -> Result<Option<i64>> {
        self.after
            .as_ref()
            .map(|c| {
                c.id.parse()
                    .map_err(|_| Error::BadRequest("this cursor is for another list".into()))
            })
            .transpose()
    }

    /// Queries fetch one row more than the limit to learn whether a next page exists.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts rows fetched with `PageRequest::fetch` to the page and names the cursor.
    pub fn from_rows(
        mut rows: Vec<T>,
        request: &PageRequest,
        key: impl Fn(&T) -> (NaiveDateTime, &dyn std::fmt::Display),
    ) -> Page<T> {
        let has_more = rows.len() as i64 > request.limit;
        rows.truncate(request.limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|last| {
                let (at, id) = key(last);
                Cursor {
                    at,
                    id: id.to_string(),
                }
                .encode()
            })
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Orders a boxed query by `(at, id)` and starts it after the cursor:
/// `keyset!(query, table::created_at, table::id, page, desc)` for newest
/// first, `asc` for oldest first.
macro_rules! keyset {
    ($query:expr, $at:expr, $id:expr, $page:expr, desc) => {{
        let mut query = $query;
        if let Some(c) = &$page.after {
            query = query.filter($at.lt(c.at).or($at.eq(c.at).and($id.lt(c.id.clone()))));
        }
        query.order(($at.desc(), $id.desc())).limit($page.fetch())
    }};
    ($query:expr, $at:expr, $id:expr, $page:expr, asc) => {{
        let mut query = $query;
        if let Some(c) = &$page.after {
            query = query.filter($at.gt(c.at).or($at.eq(c.at).and($id.gt(c.id.clone()))));
        }
        query.order(($at.asc(), $id.asc())).limit($page.fetch())
    }};
}
pub(crate) use keyset;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456)
                .map(|d| d.naive_utc())
                .unwrap_or_default(),
            id: "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).ok(), Some(c));
    }

    #[test]
    fn garbled_cursors_are_bad_requests() {
        for bad in [
            "!!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12/not-a-uuid"),
        ] {
            assert!(
                matches!(Cursor::decode(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_cursor_is_the_first_page() {
        assert_eq!(
            PageRequest::new(None, Some("")).map(|p| p.after).ok(),
            Some(None)
        );
    }

    #[test]
    fn limits_outside_1_to_500_are_rejected() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(501), None).is_err());
        assert_eq!(PageRequest::new(None, None).map(|p| p.limit).ok(), Some(50));
    }
}
