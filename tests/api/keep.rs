//! `GET /v1/keep`: what build hosts keep cached (API.md, "What build hosts
//! should keep cached").

use crate::support::{id, images, items, TestApp};
use serde_json::{json, Value};

/// `(reason, snapshot id, plan slug, image id)` of each item, sorted.
fn entries(list: &Value) -> Vec<(String, String, String, String)> {
    let mut found: Vec<_> = items(list)
        .iter()
        .map(|k| {
            let text = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (
                text("reason"),
                text("snapshot_id"),
                text("plan"),
                text("image_id"),
            )
        })
        .collect();
    found.sort();
    found
}

/// What a snapshot's plans use: each own plan its image, i386 ubuntu's.
fn used(reason: &str, snapshot: &Value) -> Vec<(String, String, String, String)> {
    let all = images(snapshot);
    let of = |n: usize| id(&all[n]);
    let mut found = vec![
        (reason.into(), id(snapshot), "debian".into(), of(0)),
        (reason.into(), id(snapshot), "ubuntu".into(), of(1)),
        (reason.into(), id(snapshot), "i386".into(), of(1)),
    ];
    found.sort();
    found
}

async fn keep(app: &TestApp, rollback: u32) -> crate::support::Reply {
    app.get(&format!("/v1/keep?rollback={rollback}")).await
}

#[actix_rt::test]
async fn hosts_keep_the_current_images_and_the_next_rollback_targets() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    app.plan("web", json!({"slug": "i386", "snapshot_plan": "ubuntu"}))
        .await;
    assert_eq!(app.get("/v1/keep").await.expect(200)["items"], json!([]));
    let [a, b, c] = [
        app.active_snapshot("web").await,
        app.active_snapshot("web").await,
        app.active_snapshot("web").await,
    ];
    for snapshot in [&a, &b, &c, &b, &c] {
        app.set_current("web", snapshot).await.expect(200);
    }
    assert_eq!(
        entries(&keep(&app, 0).await.expect(200)),
        used("current", &c)
    );
    let mut one = used("current", &c);
    one.extend(used("rollback", &b));
    one.sort();
    assert_eq!(
        entries(&app.get("/v1/keep").await.expect(200)),
        one,
        "default 1"
    );
    let mut three = one.clone();
    three.extend(used("rollback", &a));
    three.sort();
    assert_eq!(
        entries(&keep(&app, 3).await.expect(200)),
        three,
        "each once"
    );
    // A former current that left `active` is no rollback target.
    app.set_snapshot(&b, "invalidated").await.expect(200);
    let mut now = used("current", &c);
    now.extend(used("rollback", &a));
    now.sort();
    assert_eq!(entries(&keep(&app, 1).await.expect(200)), now);
    // A cleared pointer: a rollback may still bring the last current back.
    app.delete("/v1/projects/web/current").await.expect(204);
    assert_eq!(
        entries(&keep(&app, 1).await.expect(200)),
        used("rollback", &c)
    );
    for bad in ["11", "-1", "x"] {
        app.get(&format!("/v1/keep?rollback={bad}"))
            .await
            .assert_error(400, "bad_request");
    }
}

#[actix_rt::test]
async fn a_scoped_token_keeps_its_projects_only() {
    let app = TestApp::spawn().await;
    for project in ["web", "api"] {
        app.project_with_plans(project, &["debian"]).await;
        let snapshot = app.active_snapshot(project).await;
        app.set_current(project, &snapshot).await.expect(200);
    }
    let secret = crate::auth::token(&app, "api-host", "reader", &["api"]).await;
    let listed = app.get_as(&secret, "/v1/keep").await;
    let projects: Vec<Value> = items(&listed)
        .iter()
        .map(|k| k["project"].clone())
        .collect();
    assert_eq!(projects, [json!("api")]);
    let all = app.get("/v1/keep").await.expect(200);
    assert_eq!(items(&all).len(), 2);
}
