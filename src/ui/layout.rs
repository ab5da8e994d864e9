//! The page shell and the small pieces every page uses: status badges,
//! relative times with the exact value on hover, sizes, short ids, and the
//! headers that keep the pages from being framed or running foreign script.

use crate::db::rows::EventRow;
use crate::status::Status;
use actix_web::http::header;
use actix_web::HttpResponse;
use chrono::NaiveDateTime;
use maud::{html, Markup, DOCTYPE};
use std::collections::HashMap;

/// Assets change with the binary; the version in their URL lets browsers
/// cache them for a long time.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the shell needs besides the content.
pub struct Shell<'a> {
    pub title: &'a str,
    /// The token's name, when signed in with one (shows sign-out).
    pub signed_in_as: Option<&'a str>,
    /// The event stream the page follows to refresh itself, if any.
    pub live: Option<String>,
}

pub fn page(shell: Shell, content: Markup) -> HttpResponse {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (shell.title) " · snapreg" }
                link rel="stylesheet" href={ "/ui/assets/style.css?v=" (VERSION) };
                @if shell.live.is_some() {
                    script src={ "/ui/assets/live.js?v=" (VERSION) } defer {}
                }
            }
            body {
                header.top {
                    a.brand href="/ui/" { "snapreg" }
                    nav {
                        a href="/ui/" { "Projects" }
                    }
                    @if shell.live.is_some() {
                        // The script says "live" once the stream is open.
                        span #live.live.off title="Updates as events happen" { "connecting" }
                    }
                    @if let Some(name) = shell.signed_in_as {
                        form.signout method="post" action="/ui/sign-out" {
                            span.who { "signed in as " strong { (name) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main data-live=[shell.live] {
                    (content)
                }
            }
        }
    };
    html_response(HttpResponse::Ok(), body)
}

/// An HTML answer with the dashboard's security headers.
pub fn html_response(mut builder: actix_web::HttpResponseBuilder, body: Markup) -> HttpResponse {
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(body.into_string())
}

pub fn badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

pub fn status(status: Status) -> Markup {
    badge(status.as_str())
}

/// "5 min ago", with the exact UTC time on hover.
pub fn ago(at: NaiveDateTime, now: NaiveDateTime) -> Markup {
    let exact = at.and_utc().format("%Y-%m-%d %H:%M:%S UTC").to_string();
    html! {
        time datetime=(at.and_utc().to_rfc3339()) title=(exact) { (relative(now - at)) }
    }
}

fn relative(elapsed: chrono::Duration) -> String {
    let seconds = elapsed.num_seconds();
    match seconds {
        s if s < 5 => "just now".to_owned(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// 1536 → "1.5 KiB".
pub fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// The last 8 characters of an id (UUIDv7 ids share their time prefix),
/// the whole id on hover.
pub fn short(id: &str) -> Markup {
    html! { code title=(id) { (tail(id)) } }
}

/// The last 8 characters.
pub fn tail(id: &str) -> &str {
    id.char_indices().rev().nth(7).map_or(id, |(i, _)| &id[i..])
}

/// A page of newer/older links: `next` is the cursor of the next page.
pub fn pager(path: &str, next: Option<&str>, on_first: bool) -> Markup {
    html! {
        @if next.is_some() || !on_first {
            nav.pager {
                @if !on_first { a href=(path) { "← newest" } }
                @if let Some(cursor) = next {
                    a href={ (path) "?cursor=" (cursor) } { "older →" }
                }
            }
        }
    }
}

/// The event list of a project or snapshot page; `plan_of` names the plan
/// of the images the page knows.
pub fn events(events: &[EventRow], now: NaiveDateTime, plan_of: &HashMap<&str, &str>) -> Markup {
    html! {
        @if events.is_empty() {
            p.empty { "No events yet." }
        } @else {
            table.events {
                thead { tr { th { "seq" } th { "when" } th { "what" } th { "change" } th { "why" } th { "who" } } }
                tbody {
                    @for event in events {
                        tr {
                            td.num { (event.seq.map(|s| s.to_string()).unwrap_or_default()) }
                            td { (ago(event.at, now)) }
                            td {
                                (event.kind)
                                @if let Some(plan) = event.image_id.as_deref().and_then(|i| plan_of.get(i)) {
                                    " " code { (plan) }
                                }
                                @if let Some(snapshot) = &event.snapshot_id {
                                    " " a href={ "/ui/snapshots/" (snapshot) } { (short(snapshot)) }
                                }
                            }
                            td {
                                @if let Some(from) = &event.from_value { (badge_or_id(from)) " → " }
                                @if let Some(to) = &event.to_value { (badge_or_id(to)) }
                            }
                            td { (event.reason.as_deref().unwrap_or("")) }
                            td { (event.actor.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// Status events carry statuses, pointer events snapshot ids, artifact
/// events digests.
fn badge_or_id(value: &str) -> Markup {
    if let Ok(status) = value.parse::<Status>() {
        return self::status(status);
    }
    match crate::input::parse_id(value) {
        Some(_) => html! { a href={ "/ui/snapshots/" (value) } { (short(value)) } },
        None => html! { code title=(value) { (tail(value)) } },
    }
}

#[cfg(test)]
mod tests {
    use super::{relative, size};
    use chrono::Duration;

    #[test]
    fn sizes_and_ages_read_at_a_glance() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(relative(Duration::seconds(2)), "just now");
        assert_eq!(relative(Duration::seconds(90)), "1 min ago");
        assert_eq!(relative(Duration::hours(5)), "5 h ago");
        assert_eq!(relative(Duration::days(3)), "3 d ago");
    }
}
