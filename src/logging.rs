//! Log lines carry the id of the request they belong to: the async part of
//! a request runs inside a task-local scope, its blocking database work
//! inside a thread-local one (see `api::AppState::run`).

use std::cell::RefCell;
use std::io::Write;

tokio::task_local! {
    static TASK_REQUEST_ID: String;
}

thread_local! {
    static THREAD_REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The id of the request being served here, if any.
pub fn current_request_id() -> Option<String> {
    TASK_REQUEST_ID
        .try_with(|id| id.clone())
        .ok()
        .or_else(|| THREAD_REQUEST_ID.with(|id| id.borrow().clone()))
}

/// Runs an async request under its id.
pub async fn in_request<F: std::future::Future>(id: String, future: F) -> F::Output {
    TASK_REQUEST_ID.scope(id, future).await
}

/// Runs blocking work (on another thread) under the request's id.
pub fn on_thread<T>(id: Option<String>, f: impl FnOnce() -> T) -> T {
    /// Puts the thread's previous id back, also when `f` panicked (a write
    /// batch's leader runs other requests' transactions, and catches their
    /// panics).
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            THREAD_REQUEST_ID.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let _restore = Restore(THREAD_REQUEST_ID.with(|slot| slot.replace(id)));
    f()
}

/// env_logger, `RUST_LOG` (default `info`), one line per record:
/// `time level [request-id] target: message`.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let id = current_request_id().unwrap_or_else(|| "-".to_owned());
            writeln!(
                buf,
                "{} {:5} [{id}] {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();
}
