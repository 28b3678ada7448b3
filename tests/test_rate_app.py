"""The rating app over HTTP: blindness, escaping, tokens, CSRF, who can see what, exports, imports, bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from herd.rate.app import create_app
from herd.rate.design import assign
from herd.rate.store import Study
from tests.rate_study import MODELS, csrf_of, make_study, write_answers

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def study(tmp_path):
    answers = tmp_path / "answers.jsonl"
    rows = write_answers(answers)
    created = make_study(tmp_path / "study", answers, per_item=2, raters=2)  # both raters rate all 9 answers
    return {"folder": tmp_path / "study", "created": created, "rows": rows, "answers": answers}


def client(study) -> TestClient:
    return TestClient(create_app(study["folder"]), base_url=BASE)


def rater_client(study, name: str) -> TestClient:
    c = client(study)
    r = c.get(f"/r/{study['created'].rater_tokens[name]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/rate"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    return c


def admin_client(study) -> TestClient:
    c = client(study)
    assert c.get(f"/admin/login/{study['created'].admin_token}").status_code == 200
    return c


def rate(c: TestClient, position: int, rating: str, comment: str = "", **headers: str):
    csrf = csrf_of(c.get(f"/rate/{position}").text)
    return c.post(f"/rate/{position}", data={"csrf": csrf, "rating": rating, "comment": comment},
                  headers=headers, follow_redirects=False)


def stored(study) -> list[dict]:
    return Study(study["folder"]).export_rows()


def test_assignment_gives_every_answer_distinct_raters_in_a_seeded_shuffled_order():
    answers = [{"id": f"q{i}::{m}", "instruction_id": f"q{i}"} for i in range(10) for m in ("a", "b", "c")]
    plan = assign(answers, per_item=3, per_rater=6, raters=0, names=[], seed=7)
    assert len(plan.raters) == 15 and all(len(items) == 6 and len(set(items)) == 6 for items in plan.items)
    assert Counter(i for items in plan.items for i in items) == Counter({a["id"]: 3 for a in answers})
    assert plan == assign(answers, per_item=3, per_rater=6, raters=0, names=[], seed=7)
    same_set = assign(answers, per_item=2, per_rater=30, raters=0, names=[], seed=7)
    assert sorted(same_set.items[0]) == sorted(same_set.items[1]) and same_set.items[0] != same_set.items[1]
    assert assign(answers, per_item=3, per_rater=6, raters=0, names=[], seed=8).items != plan.items


def test_rater_pages_are_blind(study):
    c = rater_client(study, "rater-01")
    pages = [c.get(f"/rate/{n}").text for n in range(1, 10)] + [c.get("/rate/done").text, c.get("/rate/99").text]
    secret_words = [*MODELS, "::", "q0", "q1", "q2"]  # model names, answer ids, instruction ids
    for html in pages:
        assert not [w for w in secret_words if w in html]
    assert sum("Question 1: say why." in p for p in pages) == 3  # all three models' answers, none named


def test_answers_are_escaped(study):
    c = rater_client(study, "rater-01")
    pages = [c.get(f"/rate/{n}").text for n in range(1, 10)]
    shown = [p for p in pages if "window.__pwned" in p]
    assert len(shown) == 1
    escaped = "&lt;script&gt;window.__pwned = 1; alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;"
    assert escaped in shown[0]
    assert "<script>window" not in shown[0] and "<b>not bold" not in shown[0]


def test_security_headers(study):
    c = rater_client(study, "rater-01")
    r = c.get("/rate/1")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert c.get("/rate/1", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert "script-src 'self'" in c.get("/rate/99").headers["content-security-policy"]  # error pages too


def test_behind_an_https_proxy(tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_answers(answers)
    created = make_study(tmp_path / "s", answers, per_item=1, raters=1, url="https://rate.example.org")
    c = TestClient(create_app(tmp_path / "s"), base_url="http://rate.example.org")  # TLS ends at the proxy
    r = c.get(f"/r/{created.rater_tokens['rater-01']}", follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]
    c.cookies.set("herd_rater", created.rater_tokens["rater-01"])
    assert rate(c, 1, "A", origin="https://rate.example.org").status_code == 303
    assert rate(c, 2, "A", origin="http://rate.example.org.evil.example").status_code == 403


def test_rate_go_back_and_change(study):
    c = rater_client(study, "rater-01")
    r = rate(c, 1, "B", "first try")
    assert r.status_code == 303 and r.headers["location"] == "/rate/2"
    assert rate(c, 2, "A").headers["location"] == "/rate/3"
    r = rate(c, 1, "D", "changed my mind")  # back to item 1: the next unrated comes after it
    assert r.headers["location"] == "/rate/3"
    rows = stored(study)
    assert len(rows) == 2
    mine = {r["rating"]: r["comment"] for r in rows}
    assert mine == {"D": "changed my mind", "A": ""}
    page = c.get("/rate/1").text
    assert "changed my mind" in page and 'value="D" class="choice D chosen"' in page
    for n in range(3, 10):
        rate(c, n, "C")
    assert rate(c, 2, "B").headers["location"] == "/rate/done"
    assert "All 9 rated" in c.get("/rate/done").text


def test_tokens_are_needed_and_stored_hashed(study):
    c = client(study)
    assert c.get("/rate/1").status_code == 401
    r = c.get("/r/not-a-real-token", follow_redirects=False)
    assert r.status_code == 404 and "set-cookie" not in r.headers
    c.cookies.set("herd_rater", "forged-token")
    assert c.get("/rate/1").status_code == 401
    raw = (study["folder"] / "study.sqlite").read_bytes()
    for token in [study["created"].admin_token, *study["created"].rater_tokens.values()]:
        assert token.encode() not in raw


def test_raters_cannot_see_or_change_each_others_ratings(study):
    one, two = rater_client(study, "rater-01"), rater_client(study, "rater-02")
    rate(one, 1, "A", "private note of rater one")
    for n in range(1, 10):
        assert "private note of rater one" not in two.get(f"/rate/{n}").text
    # Rater two posting with rater one's CSRF token is refused; with their own, it saves their own rating only.
    stolen = csrf_of(one.get("/rate/1").text)
    r = two.post("/rate/1", data={"csrf": stolen, "rating": "D"}, follow_redirects=False)
    assert r.status_code == 403
    rate(two, 1, "D")
    by_rater = {(r["rater"], r["rating"]) for r in stored(study)}
    assert by_rater == {("rater-01", "A"), ("rater-02", "D")}


def test_raters_cannot_reach_admin_pages(study):
    c = rater_client(study, "rater-01")
    for path in ("/admin", "/admin/ratings.csv", "/admin/ratings.jsonl", "/admin/chart.png"):
        assert c.get(path).status_code == 401
    # A rater's token put in the admin cookie is still not the admin's.
    c.cookies.set("herd_admin", study["created"].rater_tokens["rater-01"], path="/admin")
    assert c.get("/admin").status_code == 403
    assert c.get(f"/admin/login/{study['created'].rater_tokens['rater-01']}", follow_redirects=False).status_code == 404


@pytest.mark.parametrize("case", ["no_token", "wrong_token", "other_origin", "cross_site", "bad_rating", "long"])
def test_bad_posts_are_refused_and_save_nothing(study, case):
    c = rater_client(study, "rater-01")
    csrf = csrf_of(c.get("/rate/1").text)
    data = {"csrf": csrf, "rating": "A", "comment": ""}
    headers = {}
    expected = 403
    if case == "no_token":
        data.pop("csrf")
    elif case == "wrong_token":
        data["csrf"] = "0" * 64
    elif case == "other_origin":
        headers["origin"] = "http://evil.example"
    elif case == "cross_site":
        headers["sec-fetch-site"] = "cross-site"
    elif case == "bad_rating":
        data["rating"], expected = "E", 400
    else:
        data["comment"], expected = "x" * 2001, 400
    r = c.post("/rate/1", data=data, headers=headers, follow_redirects=False)
    assert r.status_code == expected
    assert stored(study) == []


def test_same_origin_post_is_accepted(study):
    c = rater_client(study, "rater-01")
    r = rate(c, 1, "A", origin=BASE, **{"sec-fetch-site": "same-origin"})
    assert r.status_code == 303 and len(stored(study)) == 1


def test_positions_outside_the_list_are_not_found(study):
    c = rater_client(study, "rater-01")
    assert c.get("/rate/0").status_code == 404 and c.get("/rate/10").status_code == 404
    csrf = csrf_of(c.get("/rate/1").text)
    assert c.post("/rate/10", data={"csrf": csrf, "rating": "A"}).status_code == 404


def test_admin_sees_progress_agreement_chart_and_exports(study):
    one, two = rater_client(study, "rater-01"), rater_client(study, "rater-02")
    for n in range(1, 10):
        rate(one, n, "ABCD"[n % 4], "note, with comma" if n == 1 else "")
        rate(two, n, "ABCD"[n % 4] if n < 8 else "D")
    admin = admin_client(study)
    page = admin.get("/admin").text
    assert "9 / 9" in page and "Krippendorff" in page and "Fleiss" in page and all(m in page for m in MODELS)
    png = admin.get("/admin/chart.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    rows = list(csv.DictReader(io.StringIO(admin.get("/admin/ratings.csv").text)))
    assert len(rows) == 18 and list(rows[0]) == ["id", "instruction_id", "model", "rater", "rating", "comment", "time"]
    jsonl = [json.loads(line) for line in admin.get("/admin/ratings.jsonl").text.splitlines()]
    assert [r["id"] for r in jsonl] == [r["id"] for r in rows]
    assert {r["model"] for r in jsonl} == set(MODELS)
    assert {r["comment"] for r in jsonl} == {"note, with comma", ""}


def herd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herd", *args], capture_output=True, text=True, timeout=120)


def test_cli_create_prints_links_that_work(tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_answers(answers)
    out = herd("rate-app", "create", "--answers", str(answers), "--study", str(tmp_path / "s"), "--per-item", "2",
               "--per-rater", "6", "--port", "9911")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("admin: http://127.0.0.1:9911/admin/login/")
    assert [line.split(":")[0] for line in lines[1:4]] == ["rater-01", "rater-02", "rater-03"]
    c = TestClient(create_app(tmp_path / "s"), base_url=BASE)
    assert c.get(lines[1].split(": ")[1].replace("http://127.0.0.1:9911", "")).url.path == "/rate/1"
    assert "Item 1</strong> of 6" in c.get("/rate/1").text and "0 rated" in c.get("/rate/1").text


def test_cli_export_import_round_trip_and_relink(study, tmp_path):
    c = rater_client(study, "rater-01")
    for n in range(1, 4):
        rate(c, n, "B", f"comment {n}")
    folder = str(study["folder"])
    out = herd("rate-app", "export", str(tmp_path / "r.csv"), "--study", folder)
    assert out.returncode == 0 and out.stdout.strip() == f"rate-app: 3 ratings -> {tmp_path / 'r.csv'}"
    copy = tmp_path / "copy"
    make_study(copy, study["answers"], per_item=2, raters=2)
    assert herd("rate-app", "import", str(tmp_path / "r.csv"), "--study", str(copy)).stdout.strip().endswith(
        "3 added, 0 changed, 0 unchanged")
    again = herd("rate-app", "import", str(tmp_path / "r.csv"), "--study", str(copy))
    assert again.stdout.strip().endswith("0 added, 0 changed, 3 unchanged")  # importing twice duplicates nothing
    assert Study(copy).export_rows() == stored(study)
    new = herd("rate-app", "relink", "--rater", "rater-01", "--study", folder).stdout.strip()
    old_token = study["created"].rater_tokens["rater-01"]
    assert client(study).get(f"/r/{old_token}", follow_redirects=False).status_code == 404
    assert client(study).get(new.replace("http://127.0.0.1:8765", ""), follow_redirects=False).status_code == 303
    status = herd("rate-app", "status", "--study", folder).stdout.splitlines()
    assert status[:2] == ["rater-01: 3/9 rated", "rater-02: 0/9 rated"]


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    return lines[0]


def test_import_with_an_unknown_id_changes_nothing(study, tmp_path):
    rate(rater_client(study, "rater-01"), 1, "A")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "q0::" + MODELS[0], "rater": "x", "rating": "B"}) + "\n"
                   + json.dumps({"id": "q9::nobody", "rater": "x", "rating": "B"}) + "\n")
    before = stored(study)
    line = one_error_line(herd("rate-app", "import", str(bad), "--study", str(study["folder"])))
    assert line == f"herd: error: {bad}:2: unknown answer id 'q9::nobody' (not in this study)"
    assert stored(study) == before


@pytest.mark.parametrize(("row", "message"), [
    ({"id": "q0::zebra-student-7q", "rater": "x", "rating": "E"}, "field 'rating' is 'E', not one of A, B, C, D"),
    ({"id": "q0::zebra-student-7q", "rater": "x"}, "missing field 'rating'"),
    ({"id": "q0::zebra-student-7q", "rater": "x", "rating": "A", "model": "other"},
     "field 'model' is 'other', the study has 'zebra-student-7q' for 'q0::zebra-student-7q'"),
])
def test_import_bad_rows(study, tmp_path, row, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    assert one_error_line(herd("rate-app", "import", str(bad), "--study", str(study["folder"]))) == (
        f"herd: error: {bad}:1: {message}")
    assert stored(study) == []


@pytest.mark.parametrize(("drop", "message"), [
    ("model", "{path}:4: missing field 'model'"),
    ("id", "{path}:4: missing field 'id'"),
    ("row", "{path}: instruction 'q1' has no answer from model(s) zebra-student-7q "
            "(rate_app.allow_incomplete=true rates it anyway)"),
])
def test_bad_answers_table_creates_nothing(tmp_path, drop, message):
    answers = tmp_path / "answers.jsonl"
    rows = write_answers(answers)
    if drop == "row":
        rows.pop(3)
    else:
        rows[3].pop(drop)
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = herd("rate-app", "create", "--answers", str(answers), "--study", str(tmp_path / "s"))
    assert one_error_line(out) == "herd: error: " + message.format(path=answers)
    assert not (tmp_path / "s").exists()


def test_relink_needs_a_known_rater_or_the_admin(study):
    folder = str(study["folder"])
    line = one_error_line(herd("rate-app", "relink", "--rater", "nobody", "--study", folder))
    assert line == f"herd: error: {study['folder'] / 'study.sqlite'}: no rater named 'nobody'"
    assert one_error_line(herd("rate-app", "relink", "--study", folder)).endswith("give exactly one of --rater NAME "
                                                                                 "or --admin")
    new = herd("rate-app", "relink", "--admin", "--study", folder).stdout.strip()
    assert client(study).get(f"/admin/login/{study['created'].admin_token}").status_code == 404
    assert client(study).get(new.replace("http://127.0.0.1:8765", "")).url.path == "/admin"


def test_study_is_not_overwritten(study):
    out = herd("rate-app", "create", "--answers", str(study["answers"]), "--study", str(study["folder"]))
    assert one_error_line(out) == f"herd: error: {study['folder'] / 'study.sqlite'}: a study already exists here " \
        "(choose another --study folder)"
