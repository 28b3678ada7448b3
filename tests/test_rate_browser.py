"""The rating app in a real headless Chromium (Debian's chromium driven by Playwright) against a real server.

Two simulated raters rate every answer: one only with the keyboard on a desktop-sized window (keys 1-4 and a-d,
the arrow keys to go back, a comment typed without rating by accident), one with taps on a phone-sized window. The
answer holding a <script> must show as text and never run. Then the admin page: progress, agreement, the chart.
Screenshots are saved in the test's tmp dir.
"""

from __future__ import annotations

import shutil

import pytest

from herd.rate.agreement import summary
from herd.rate.store import Study
from tests.rate_study import MODELS, make_study, running_server, write_answers

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
KEYS = ["1", "b", "3", "d", "a", "2", "c", "4", "1"]  # rater one's keys for items 1..9
RATER_TWO = "ABCDABDDA"  # rater two's taps, item by item in their own order


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (make chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        yield b
        b.close()


def blind(page) -> None:
    html = page.content()
    assert not [m for m in [*MODELS, "::"] if m in html], page.url


def test_two_raters_and_the_admin(browser, tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_answers(answers)
    created = make_study(tmp_path / "study", answers, per_item=2, raters=2)
    with running_server(tmp_path / "study") as base:
        script_position = keyboard_rater(browser, base + "/r/" + created.rater_tokens["rater-01"], tmp_path)
        tapping_rater(browser, base + "/r/" + created.rater_tokens["rater-02"], tmp_path)
        admin_page(browser, base + "/admin/login/" + created.admin_token, tmp_path)

    rows = Study(tmp_path / "study").export_rows()
    one = [r for r in rows if r["rater"] == "rater-01"]
    assert len(rows) == 18 and len(one) == 9
    assert sorted(r["rating"] for r in one) == sorted("ABCDABCDA".replace("D", "B", 1))  # item 4 changed D -> B
    assert [r["comment"] for r in one if r["comment"]] == ["typed abcd 1234 while commenting"]
    assert script_position is not None


def keyboard_rater(browser, link: str, tmp_path) -> int | None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(link)
    assert page.url.endswith("/rate/1")
    script_position = None
    for n, key in enumerate(KEYS, start=1):
        page.wait_for_url(f"**/rate/{n}")
        blind(page)
        assert page.locator(".progress-line").inner_text().startswith(f"Item {n} of 9")
        if "<script>window.__pwned" in page.locator("#answer").inner_text():
            script_position = n
            assert page.locator("#answer script, #answer b").count() == 0
            page.screenshot(path=str(tmp_path / "rater_script_answer.png"), full_page=True)
        if n == 2:
            # Typing in the comment box must not rate: the same letters rate when the box is not focused.
            page.locator("#comment").click()
            page.keyboard.type("typed abcd 1234 while commenting")
            assert page.url.endswith("/rate/2")
            page.keyboard.press("Escape")
        if n == 5:
            page.keyboard.press("ArrowLeft")  # back to item 4 (rated D) and change it to B
            page.wait_for_url("**/rate/4")
            assert page.locator('button[value="D"]').get_attribute("aria-pressed") == "true"
            page.keyboard.press("2")
            page.wait_for_url("**/rate/5")
        page.keyboard.press(key)
    page.wait_for_url("**/rate/done")
    assert "All 9 rated" in page.locator("h1").inner_text()
    assert dialogs == [] and page.evaluate("window.__pwned") is None  # the <script> answer never ran
    page.close()
    return script_position


def tapping_rater(browser, link: str, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(link)
    for n, rating in enumerate(RATER_TWO, start=1):
        page.wait_for_url(f"**/rate/{n}")
        blind(page)
        if n == 1:
            page.screenshot(path=str(tmp_path / "rater_phone.png"), full_page=True)
            # Narrow screen: the four choices sit two by two, the rubric below the work, no sideways scrolling.
            a, c = page.locator('button[value="A"]').bounding_box(), page.locator('button[value="C"]').bounding_box()
            assert c["y"] > a["y"] and abs(c["x"] - a["x"]) < 2
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator(f'button[value="{rating}"]').tap()
    page.wait_for_url("**/rate/done")
    page.close()


def admin_page(browser, link: str, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(link)
    assert page.url.endswith("/admin")
    assert page.locator("#raters tbody tr").count() == 2
    assert page.locator("#raters").inner_text().count("9 / 9") == 2
    agreement = page.locator("#agreement").inner_text()
    assert "Over 9 answers rated by two or more people (18 ratings of 9 answers in all)" in agreement
    stats = summary(Study(tmp_path / "study").export_rows())
    for label, key in (("Krippendorff's alpha, ordinal (A > B > C > D)", "alpha_ordinal"),
                       ("Krippendorff's alpha, nominal", "alpha_nominal"), ("Fleiss' kappa", "fleiss_kappa")):
        assert f"{label}\t{stats[key]:.3f}" in agreement
    page.wait_for_function("document.querySelector('img.chart').complete")
    assert page.evaluate("document.querySelector('img.chart').naturalWidth") > 300
    assert page.locator("#counts tbody tr").count() == len(MODELS)
    page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
    page.close()
