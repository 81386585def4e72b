"""The web page in a real headless Chromium (Debian's, driven by Playwright): upload, top label, Grad-CAM.

This test fails, never skips, when the browser cannot run: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import pytest

from .helpers import API_KEY, image_bytes

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_upload_through_the_page_shows_the_top_label_and_the_cam_toggle_draws(server, served_model, tmp_path,
                                                                              request):
    from playwright.sync_api import sync_playwright

    from vision_tl import load_learner

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(21, size=(160, 120)))
    expected = load_learner(served_model, backend="torch").predict(photo.read_bytes())[0]
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:")) else outside.append(r.url))
            page.goto(server.url + "/", wait_until="load")
            # (selectors, not wait_for_function: the page's CSP forbids evaluating strings, as it should)
            page.locator("#model", has_text="model.vtl").wait_for(timeout=30_000)
            assert page.is_visible("#api-key")  # the server wants a key: the page asks for it
            page.fill("#api-key", API_KEY)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            assert page.text_content("#label") == expected
            assert page.locator("#bars li").count() == 3
            assert page.is_hidden("#error")
            page.check("#cam-toggle")
            page.wait_for_selector("#cam[data-drawn='1']", state="attached", timeout=60_000)
            assert page.is_visible("#cam") and page.is_hidden("#preview")
            # the canvas holds the heatmap: not blank, and more than one colour
            colours = page.evaluate("""() => {
                const c = document.getElementById('cam'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const seen = new Set(); for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] + ',' + d[i+1] + ',' + d[i+2]);
                return seen.size; }""")
            assert colours > 10
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            # a bad file shows the server's one-line error, as text
            bad = tmp_path / "notes.jpg"
            bad.write_bytes(b"<b>not</b> an image")
            page.set_input_files("#file", str(bad))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            assert page.text_content("#error") == "'notes.jpg': not an image file PIL can read"
            # drag and drop an image onto the drop zone: classified again, the error cleared
            import base64

            dropped = base64.b64encode(image_bytes(22, size=(64, 64), fmt="PNG")).decode()
            page.evaluate("""(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
            }""", dropped)
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            assert page.is_hidden("#error") and page.text_content("#label") in ("circle", "square", "stripes")
            # the OpenAPI docs render from the server's own Swagger UI
            page.goto(server.url + "/docs", wait_until="load")
            page.wait_for_selector(".opblock", timeout=60_000)
            assert page.locator(".opblock").count() >= 5
        finally:
            browser.close()
    assert not outside, f"the page fetched from elsewhere: {outside}"
    keep = request.config.getoption("basetemp", None)
    print(f"screenshot: {shot} (basetemp {keep})")
