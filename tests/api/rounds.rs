//! Background rounds across replicas (`db::rounds`): on PostgreSQL two
//! replicas starting the same round at once run it once, and a round a
//! replica finished within the interval is not run again by another; on
//! SQLite (one process) every round runs.

use crate::support::TestApp;
use snapreg::db::rounds::{once_across_replicas, Round};
use snapreg::db::DatabaseUrl;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// Two replicas start `task` together; returns what became of each round
/// and the most rounds that ran at the same moment.
fn race(url: &DatabaseUrl, task: &str, interval: Duration) -> (Vec<Round>, usize) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(2));
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let (url, task) = (url.clone(), task.to_owned());
            let (running, most, start) = (running.clone(), most.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                once_across_replicas(&url, &task, interval, || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .expect("the coordination works")
            })
        })
        .collect();
    let rounds = replicas
        .into_iter()
        .map(|r| r.join().expect("a replica thread"))
        .collect();
    (rounds, most.load(Ordering::SeqCst))
}

#[actix_rt::test]
async fn a_background_round_runs_on_one_replica_at_a_time() {
    let app = TestApp::spawn().await;
    let url = app.config.database_url.clone();
    let hour = Duration::from_secs(3600);
    let (rounds, most) = actix_web::rt::task::spawn_blocking(move || {
        let first = race(&url, "gc", hour);
        // Finished a moment ago: not due again within the hour…
        let again = once_across_replicas(&url, "gc", hour, || {}).expect("coordination");
        // …but another task is, and so is gc on a short interval.
        let other = once_across_replicas(&url, "watchdog", hour, || {}).expect("coordination");
        let short = once_across_replicas(&url, "gc", Duration::ZERO, || {}).expect("coordination");
        (
            first
                .0
                .into_iter()
                .chain([again, other, short])
                .collect::<Vec<_>>(),
            first.1,
        )
    })
    .await
    .expect("the replicas");
    match app.config.database_url {
        DatabaseUrl::Postgres(_) => {
            assert_eq!(most, 1, "two replicas ran the round at once");
            let mut raced = rounds[..2].to_vec();
            raced.sort_by_key(|r| *r == Round::Skipped);
            assert_eq!(raced, [Round::Ran, Round::Skipped]);
            assert_eq!(rounds[2..], [Round::Skipped, Round::Ran, Round::Ran]);
        }
        DatabaseUrl::Sqlite(_) => {
            assert_eq!(most, 2, "one process: nothing to coordinate");
            assert!(rounds.iter().all(|r| *r == Round::Ran), "{rounds:?}");
        }
    }
}
