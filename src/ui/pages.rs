//! The three read-only pages: projects, a project, a snapshot. Each reads
//! one `registry::dashboard` model and renders it; nothing here changes
//! the registry.

use super::layout::{self, ago, badge, page, pager, short, size, status, Shell};
use super::{failure, Viewer};
use crate::api::AppState;
use crate::db::rows::{ImageRow, PlanRow};
use crate::registry::dashboard::{self, ProjectPage, SnapshotPage, PAGE_SIZE};
use crate::registry::now;
use crate::registry::page::PageRequest;
use crate::status::Status;
use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
pub struct Cursor {
    cursor: Option<String>,
}

impl Cursor {
    fn page(&self) -> crate::error::Result<PageRequest> {
        PageRequest::new(Some(PAGE_SIZE), self.cursor.as_deref())
    }
}

/// The stream a page follows: the feed after what it shows.
fn live(seq: i64, project: Option<&str>) -> String {
    match project {
        Some(id) => format!("/ui/events/stream?after={seq}&project={id}"),
        None => format!("/ui/events/stream?after={seq}"),
    }
}

pub async fn overview(
    state: web::Data<AppState>,
    viewer: Viewer,
    query: web::Query<Cursor>,
) -> HttpResponse {
    let scope = viewer.scope();
    let read = match query.page() {
        Ok(request) => {
            state
                .run(move |conn| dashboard::overview(conn, &scope, &request))
                .await
        }
        Err(e) => Err(e),
    };
    let overview = match read {
        Ok(overview) => overview,
        Err(e) => return failure(&viewer, e),
    };
    let now = now();
    let content = html! {
        h1 { "Projects" }
        @if overview.projects.items.is_empty() {
            p.empty { "No projects yet." }
        } @else {
            table.projects {
                thead { tr { th { "project" } th { "current snapshot" } th { "status" } th { "since" } th { "building" } } }
                tbody {
                    @for row in &overview.projects.items {
                        tr data-project=(row.project.slug) {
                            td { a href={ "/ui/projects/" (row.project.slug) } { (row.project.name) } " " span.slug { (row.project.slug) } }
                            @if let Some(current) = &row.current {
                                td.current { a href={ "/ui/snapshots/" (current.id) } { (short(&current.id)) } }
                                td { (status(current.status)) }
                                td { (ago(current.updated_at, now)) }
                            } @else {
                                td.current { span.none { "none" } }
                                td {} td {}
                            }
                            td.num { @if row.building > 0 { (badge("pending")) " " (row.building) } @else { "–" } }
                        }
                    }
                }
            }
        }
        (pager("/ui/", overview.projects.next_cursor.as_deref(), query.cursor.is_none()))
    };
    page(
        Shell {
            title: "Projects",
            signed_in_as: viewer.name(),
            live: Some(live(overview.seq, None)),
        },
        content,
    )
}

pub async fn project(
    state: web::Data<AppState>,
    viewer: Viewer,
    path: web::Path<String>,
    query: web::Query<Cursor>,
) -> HttpResponse {
    let (reference, scope) = (path.into_inner(), viewer.scope());
    let read = match query.page() {
        Ok(request) => {
            state
                .run(move |conn| dashboard::project(conn, &scope, &reference, &request))
                .await
        }
        Err(e) => Err(e),
    };
    match read {
        Ok(model) => {
            let title = model.project.name.clone();
            let live = live(model.seq, Some(&model.project.id));
            let content = project_content(&model, query.cursor.is_none());
            page(
                Shell {
                    title: &title,
                    signed_in_as: viewer.name(),
                    live: Some(live),
                },
                content,
            )
        }
        Err(e) => failure(&viewer, e),
    }
}

fn project_content(model: &ProjectPage, on_first: bool) -> Markup {
    let now = now();
    let project = &model.project;
    // Columns: plans that build images of their own.
    let columns: Vec<&PlanRow> = model
        .plans
        .iter()
        .filter(|p| p.snapshot_plan_id.is_none())
        .collect();
    let plan_slug = |id: &str| slug_of(&model.plans, id).to_owned();
    let images = model.snapshots.items.iter().flat_map(|view| &view.images);
    let image_plans = plans_of(images, &model.plans);
    html! {
        h1 { (project.name) " " span.slug { (project.slug) } }
        section.current {
            h2 { "Current snapshot" }
            @if let Some(current) = &model.current {
                p {
                    a href={ "/ui/snapshots/" (current.id) } { (short(&current.id)) } " "
                    (status(current.status)) " · made " (ago(current.created_at, now))
                    " · pointer version " (project.current_seq)
                    @if project.auto_promote { " · auto-promote on" }
                }
            } @else {
                p.none { "No current snapshot." }
            }
            @if !model.moves.is_empty() {
                details {
                    summary { "Pointer history" }
                    table.moves {
                        thead { tr { th { "version" } th { "when" } th { "from" } th { "to" } th { "why" } th { "who" } } }
                        tbody {
                            @for step in &model.moves {
                                tr {
                                    td.num { (step.seq) }
                                    td { (ago(step.at, now)) }
                                    td { @if let Some(s) = &step.from_snapshot_id { a href={ "/ui/snapshots/" (s) } { (short(s)) } } }
                                    td { @if let Some(s) = &step.to_snapshot_id { a href={ "/ui/snapshots/" (s) } { (short(s)) } } }
                                    td { (step.reason) }
                                    td { (step.actor.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.plans {
            h2 { "Plans" }
            table {
                thead { tr { th { "plan" } th { "name" } th { "status" } th { "image" } } }
                tbody {
                    @for plan in &model.plans {
                        tr {
                            td { code { (plan.slug) } }
                            td { (plan.name) }
                            td { (badge(plan.status.as_str())) }
                            td {
                                @if let Some(other) = &plan.snapshot_plan_id { "uses " code { (plan_slug(other)) } "'s" }
                                @else if plan.snapshot_allowed { "its own" }
                                @else { "none (snapshots off)" }
                            }
                        }
                    }
                }
            }
        }
        section.snapshots {
            h2 { "Snapshots" }
            @if model.snapshots.items.is_empty() {
                p.empty { "No snapshots yet." }
            } @else {
                table.snapshots {
                    thead {
                        tr {
                            th { "snapshot" } th { "status" } th { "made" } th { "build" }
                            @for plan in &columns { th { code { (plan.slug) } } }
                        }
                    }
                    tbody {
                        @for view in &model.snapshots.items {
                            tr data-snapshot=(view.snapshot.id) {
                                td {
                                    a href={ "/ui/snapshots/" (view.snapshot.id) } { (short(&view.snapshot.id)) }
                                    @if view.is_current { " " span.tag.current-tag { "current" } }
                                    @if view.snapshot.pinned { " " span.tag { "pinned" } }
                                }
                                td.snapshot-status { (status(view.snapshot.status)) }
                                td { (ago(view.snapshot.created_at, now)) }
                                td { (view.snapshot.build_id.as_deref().unwrap_or("")) }
                                @for plan in &columns {
                                    td { (image_cell(view.images.iter().find(|i| i.plan_id == plan.id))) }
                                }
                            }
                        }
                    }
                }
                (pager(&format!("/ui/projects/{}", project.slug), model.snapshots.next_cursor.as_deref(), on_first))
            }
        }
        section.feed {
            h2 { "Events" }
            (layout::events(&model.events, now, &image_plans))
        }
    }
}

/// A plan's slug by its id (the id itself if the plan is gone).
fn slug_of<'a>(plans: &'a [PlanRow], id: &'a str) -> &'a str {
    plans.iter().find(|p| p.id == id).map_or(id, |p| &p.slug)
}

/// Image id → its plan's slug, for the event lists.
fn plans_of<'a>(
    images: impl Iterator<Item = &'a ImageRow>,
    plans: &'a [PlanRow],
) -> HashMap<&'a str, &'a str> {
    images
        .map(|image| (image.id.as_str(), slug_of(plans, &image.plan_id)))
        .collect()
}

fn image_cell(image: Option<&ImageRow>) -> Markup {
    html! {
        @if let Some(image) = image {
            (status(image.status))
            @if let Some(bytes) = image.artifact_size { " " span.size { (size(bytes)) } }
        } @else {
            span.none { "–" }
        }
    }
}

pub async fn snapshot(
    state: web::Data<AppState>,
    viewer: Viewer,
    path: web::Path<String>,
) -> HttpResponse {
    let (reference, scope) = (path.into_inner(), viewer.scope());
    let read = state
        .run(move |conn| dashboard::snapshot(conn, &scope, &reference))
        .await;
    match read {
        Ok(model) => {
            let title = format!("Snapshot {}", layout::tail(&model.snapshot.snapshot.id));
            let live = live(model.seq, Some(&model.project.id));
            page(
                Shell {
                    title: &title,
                    signed_in_as: viewer.name(),
                    live: Some(live),
                },
                snapshot_content(&model),
            )
        }
        Err(e) => failure(&viewer, e),
    }
}

fn snapshot_content(model: &SnapshotPage) -> Markup {
    let now = now();
    let view = &model.snapshot;
    let snapshot = &view.snapshot;
    let plan = |id: &str| slug_of(&model.plans, id).to_owned();
    let image_plans = plans_of(view.images.iter(), &model.plans);
    html! {
        p.crumbs { a href={ "/ui/projects/" (model.project.slug) } { "← " (model.project.name) } }
        h1 { "Snapshot " (short(&snapshot.id)) " " span.snapshot-status { (status(snapshot.status)) } }
        dl.facts {
            dt { "id" } dd { code { (snapshot.id) } }
            dt { "made" } dd { (ago(snapshot.created_at, now)) }
            dt { "status since" } dd { (ago(snapshot.updated_at, now)) }
            @if let Some(build) = &snapshot.build_id { dt { "build" } dd { (build) } }
            @if let Some(source) = &snapshot.source { dt { "source" } dd { (source) } }
            dt { "current" } dd { @if view.is_current { "yes" } @else { "no" } }
            dt { "pinned" } dd { @if snapshot.pinned { "yes" } @else { "no" } }
        }
        section.images {
            h2 { "Images" }
            table.images {
                thead { tr { th { "plan" } th { "status" } th { "artifact" } th { "size" } th { "heartbeat" } th { "job" } } }
                tbody {
                    @for image in &view.images {
                        tr data-plan=(plan(&image.plan_id)) {
                            td { code { (plan(&image.plan_id)) } }
                            td.image-status { (status(image.status)) }
                            td {
                                @if let Some(digest) = &image.artifact_digest {
                                    code.digest title=(digest) { (digest.chars().take(19).collect::<String>()) "…" }
                                    @if let Some(kind) = &image.artifact_media_type { br; span.media { (kind) } }
                                } @else { span.none { "none yet" } }
                            }
                            td.num { @if let Some(bytes) = image.artifact_size { (size(bytes)) } }
                            td.heartbeat { @if let Some(at) = image.heartbeat_at { (ago(at, now)) } }
                            td { (image.job_id.as_deref().unwrap_or("")) }
                        }
                        @if image.status == Status::Pending {
                            @if let Some(tail) = image.log_tail.as_deref().filter(|t| !t.is_empty()) {
                                tr.log { td colspan="6" { pre { (tail) } } }
                            }
                        }
                    }
                }
            }
        }
        section.feed {
            h2 { "Events" }
            (layout::events(&model.events, now, &image_plans))
        }
    }
}
