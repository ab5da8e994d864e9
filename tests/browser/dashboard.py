"""The dashboard in a real browser (Debian's chromium, driven by Playwright).

Run by .ci/browser against a live `snapreg serve` on SQLite whose admin token
is SNAPREG_ADMIN_TOKEN and whose address is SNAPREG_URL. Each check is what a
person at the screen would notice; screenshots go to SNAPREG_SCREENSHOTS.
"""

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["SNAPREG_URL"]
ADMIN = os.environ["SNAPREG_ADMIN_TOKEN"]
SHOTS = os.environ.get("SNAPREG_SCREENSHOTS", "target/browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium reaches for Google's services, which this
# network refuses (and which a test has no business calling).
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def api(method, path, body=None, token=ADMIN):
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            text = response.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()!r}")


def upload(image_id, size):
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(
        f"{BASE}/v1/images/{image_id}/artifact?digest=sha256:{digest}",
        method="PUT",
        data=data,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/x-xz"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201, response.status
    return digest


def seed():
    """Two projects; `web` has an active current snapshot and a build in progress."""
    for slug, name in [("web", "Web frontend"), ("tools", "Internal tools")]:
        api("POST", "/v1/projects", {"slug": slug, "name": name})
        for plan in ["bookworm", "trixie"]:
            api("POST", f"/v1/projects/{slug}/plans", {"slug": plan, "name": f"Debian {plan}"})
    first = api("POST", "/v1/projects/web/snapshots", {"build_id": "ci-1041"})
    for n, image in enumerate(first["images"]):
        upload(image["id"], (300 + 200 * n) * 1024)
        api("PATCH", f"/v1/images/{image['id']}", {"status": "active"})
    api("PUT", "/v1/projects/web/current", {"snapshot_id": first["id"]})
    building = api("POST", "/v1/projects/web/snapshots", {"build_id": "ci-1042"})
    image = building["images"][0]
    building["digest"] = upload(image["id"], 64 * 1024)
    api("POST", f"/v1/images/{image['id']}/heartbeat",
        {"log_tail": "Setting up libc6 ...\nUnpacking rootfs (2/3) ..."})
    scoped = api("POST", "/v1/tokens", {"name": "tools-reader", "role": "reader", "projects": ["tools"]})
    return first, building, scoped["token"]


def sign_in(page, token):
    page.goto(BASE + "/ui/sign-in")
    page.fill("#token", token)
    page.click("form.sign-in button")


def check(name, run):
    started = time.monotonic()
    run()
    print(f"ok   {name} ({time.monotonic() - started:.1f} s)")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    current, building, scoped_token = seed()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)

        def fresh():
            return browser.new_context(viewport={"width": 1280, "height": 800}).new_page()

        def unsigned_goes_to_the_form_and_a_wrong_token_is_refused():
            page = fresh()
            page.goto(BASE + "/")
            expect(page).to_have_url(BASE + "/ui/sign-in")
            sign_in(page, "not-a-token")
            expect(page.get_by_role("alert")).to_contain_text("unknown, revoked or expired")
            expect(page).to_have_url(BASE + "/ui/sign-in")
            assert page.context.cookies() == [], page.context.cookies()
            page.screenshot(path=f"{SHOTS}/sign-in-refused.png")

        def sign_in_shows_the_projects_with_their_current_snapshot():
            page = fresh()
            sign_in(page, ADMIN)
            expect(page).to_have_url(BASE + "/ui/")
            row = page.locator("tr[data-project=web]")
            expect(row.locator("td.current")).to_contain_text(current["id"][-8:])
            expect(row).to_contain_text("active")
            expect(page.locator("tr[data-project=tools] td.current")).to_contain_text("none")
            cookie = page.context.cookies()[0]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
            page.screenshot(path=f"{SHOTS}/projects.png", full_page=True)
            page.click("text=Sign out")
            expect(page).to_have_url(BASE + "/ui/sign-in")
            page.goto(BASE + "/ui/")
            expect(page).to_have_url(BASE + "/ui/sign-in")

        def a_status_change_over_the_api_appears_without_a_reload():
            page = fresh()
            sign_in(page, ADMIN)
            page.goto(BASE + "/ui/projects/web")
            expect(page.locator("#live")).to_have_text("live")
            row = page.locator(f"tr[data-snapshot='{building['id']}']")
            expect(row.locator("td.snapshot-status")).to_have_text("pending")
            page.screenshot(path=f"{SHOTS}/project.png", full_page=True)
            # A marker a reload would wipe.
            page.evaluate("window.__notReloaded = true")
            for image in building["images"]:
                api("PATCH", f"/v1/images/{image['id']}", {"status": "active"})
            expect(row.locator("td.snapshot-status")).to_have_text("active", timeout=10_000)
            assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"

        def the_snapshot_page_shows_images_heartbeats_and_events():
            page = fresh()
            sign_in(page, ADMIN)
            page.goto(BASE + f"/ui/snapshots/{building['id']}")
            expect(page.locator("h1")).to_contain_text(building["id"][-8:])
            row = page.locator("tr[data-plan=bookworm]")
            expect(row.locator("td.image-status")).to_have_text("pending")
            expect(row.locator("code.digest")).to_have_attribute("title", "sha256:" + building["digest"])
            expect(row).to_contain_text("64.0 KiB")
            expect(row.locator("td.heartbeat time")).to_have_count(1)
            expect(page.locator("tr.log pre")).to_contain_text("Unpacking rootfs (2/3)")
            expect(page.locator("section.feed")).to_contain_text("image.artifact")
            page.screenshot(path=f"{SHOTS}/snapshot.png", full_page=True)

        def a_scoped_token_sees_its_projects_only():
            page = fresh()
            sign_in(page, scoped_token)
            expect(page.locator("tr[data-project=tools]")).to_be_visible()
            expect(page.locator("tr[data-project=web]")).to_have_count(0)
            response = page.goto(BASE + "/ui/projects/web")
            assert response.status == 404, response.status

        def reading_works_without_javascript():
            context = browser.new_context(java_script_enabled=False)
            page = context.new_page()
            sign_in(page, ADMIN)
            page.goto(BASE + "/ui/projects/web")
            expect(page.locator("table.snapshots")).to_contain_text("ci-1041")

        check("unsigned visitors go to the form; a wrong token is refused",
              unsigned_goes_to_the_form_and_a_wrong_token_is_refused)
        check("signing in shows the projects with their current snapshot",
              sign_in_shows_the_projects_with_their_current_snapshot)
        check("the snapshot page shows images, heartbeats and events",
              the_snapshot_page_shows_images_heartbeats_and_events)
        check("a status change over the API appears without a reload",
              a_status_change_over_the_api_appears_without_a_reload)
        check("a scoped token sees its projects only", a_scoped_token_sees_its_projects_only)
        check("reading works without JavaScript", reading_works_without_javascript)
        browser.close()
    print(f"screenshots in {SHOTS}")


if __name__ == "__main__":
    sys.exit(main())
