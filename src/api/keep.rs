//! `GET /v1/keep?rollback=N`: the images build hosts must keep cached.

use super::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::registry::keep::{self, Kept, MAX_ROLLBACK};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepQuery {
    rollback: Option<i64>,
}

#[derive(Serialize)]
struct KeptJson {
    project_id: String,
    project: String,
    snapshot_id: String,
    plan_id: String,
    plan: String,
    image_id: String,
    digest: Option<String>,
    reason: &'static str,
}

impl From<Kept> for KeptJson {
    fn from(k: Kept) -> Self {
        KeptJson {
            project_id: k.project.id,
            project: k.project.slug,
            snapshot_id: k.snapshot_id,
            plan_id: k.plan.id,
            plan: k.plan.slug,
            image_id: k.image.id,
            digest: k.image.artifact_digest,
            reason: k.reason,
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<KeepQuery>,
) -> Result<HttpResponse> {
    let rollback = match query.rollback {
        None => 1,
        Some(n) if (0..=MAX_ROLLBACK as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(Error::BadRequest(format!(
                "rollback is 0 to {MAX_ROLLBACK}, not {n}"
            )))
        }
    };
    let kept = state
        .run(move |conn| keep::keep_list(conn, principal.projects.as_ref(), rollback))
        .await?;
    let items: Vec<KeptJson> = kept.into_iter().map(KeptJson::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}
