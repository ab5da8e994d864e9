//! Waiting on the event feed: `wait=` long-polls and the Server-Sent Events
//! stream. A waiter holds neither a database connection nor a thread while
//! it waits: it reads on the blocking pool, then awaits the replica's
//! wake-up (`wake`) or its deadline on the async runtime.

use super::views::EventJson;
use super::AppState;
use crate::db::rows::EventRow;
use crate::error::{Error, Result};
use crate::registry::feed::{self, Batch, FeedQuery};
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The events after `query.after`; when there are none yet, waits until one
/// matching commits or `deadline` passes (then answers none). `woken` is
/// the waiter's subscription to `state.wake`, taken before its previous
/// read; `read` is false when nothing woke it since that read, so that an
/// idle waiter costs no query.
pub async fn next(
    state: &web::Data<AppState>,
    query: &FeedQuery,
    deadline: Instant,
    woken: &mut watch::Receiver<u64>,
    mut read: bool,
) -> Result<Batch> {
    let mut through = query.after;
    loop {
        if read {
            // Marked seen before the read: a commit during it wakes us again.
            woken.borrow_and_update();
            let mut asked = query.clone();
            asked.after = through;
            let batch = state.run(move |conn| feed::read(conn, &asked)).await?;
            through = batch.through;
            // Writes elsewhere may keep waking us: the deadline still holds.
            if !batch.events.is_empty() || state.wake.is_closed() || Instant::now() >= deadline {
                return Ok(batch);
            }
        }
        match tokio::time::timeout_at(deadline, woken.changed()).await {
            Ok(Ok(())) => read = true,
            // The deadline passed, or the service is going away.
            _ => {
                return Ok(Batch {
                    events: Vec::new(),
                    through,
                })
            }
        }
    }
}

/// The stream's body: `first` (read when the request was checked, after
/// `woken` was taken), then every later event as it commits, and a comment
/// after each `keepalive` without one. It ends when the service stops or
/// the reader's cursor falls behind retention (an `error` event says so).
pub fn stream(
    state: web::Data<AppState>,
    mut query: FeedQuery,
    first: Batch,
    woken: watch::Receiver<u64>,
    keepalive: Duration,
) -> impl Stream<Item = Result<Bytes>> {
    let first_was_full = first.events.len() as i64 >= query.limit;
    query.after = first.through;
    let opening = Bytes::from(format!(
        "retry: 1000\n{}",
        frames(first.events).unwrap_or_default()
    ));
    // A full first batch may have more behind it: read again at once.
    let read = first_was_full;
    let later = futures_util::stream::unfold(
        (state, query, woken, read, false),
        move |(state, mut query, mut woken, read, ended)| async move {
            if ended || state.wake.is_closed() {
                return None;
            }
            let deadline = Instant::now() + keepalive;
            let sent = query.after;
            let (chunk, read, ended) = match next(&state, &query, deadline, &mut woken, read).await
            {
                Ok(batch) if batch.events.is_empty() => {
                    query.after = batch.through;
                    // Past events this reader does not match: the id moves
                    // its Last-Event-ID on, without an event.
                    let chunk = match batch.through > sent {
                        true => format!(": keep-alive\nid: {}\n\n", batch.through),
                        false => ": keep-alive\n\n".to_owned(),
                    };
                    (chunk, false, false)
                }
                Ok(batch) => {
                    query.after = batch.through;
                    (frames(batch.events).unwrap_or_default(), true, false)
                }
                Err(e @ Error::CursorExpired { .. }) => (error_frame(&e), false, true),
                Err(e) => {
                    // The database is away: the reader stays connected and we retry.
                    log::warn!("event stream: cannot read the feed ({e}); retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    (": retrying\n\n".to_owned(), true, false)
                }
            };
            Some((Ok(Bytes::from(chunk)), (state, query, woken, read, ended)))
        },
    );
    futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(opening) }), later)
}

/// `id`, `event` and `data` lines per event; `None` for no events.
fn frames(events: Vec<EventRow>) -> Option<String> {
    let mut out = String::new();
    for event in events {
        let (seq, kind) = (event.seq.unwrap_or_default(), event.kind.clone());
        let data = serde_json::to_string(&EventJson::from(event)).unwrap_or_default();
        out.push_str(&format!("id: {seq}\nevent: {kind}\ndata: {data}\n\n"));
    }
    (!out.is_empty()).then_some(out)
}

/// The last frame of a stream that cannot go on: the error envelope.
fn error_frame(error: &Error) -> String {
    let body = serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}});
    format!("event: error\ndata: {body}\n\n")
}
