"""50 raters submitting at once against a real server on 127.0.0.1: nothing lost, nothing doubled.

Bounded: 50 raters x 6 answers = 300 ratings, then 50 changes, each rater on its own thread and connection; the
test asserts what the database holds, never how long it took.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from herd.rate.store import Study
from tests.rate_study import csrf_of, make_study, running_server, write_answers

RATERS = 50
PER_RATER = 6


@pytest.mark.timeout(300)
def test_fifty_raters_at_once_lose_and_duplicate_nothing(tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_answers(answers, instructions=10)  # 30 answers; 50 x 6 = 300 slots = 10 raters per answer
    created = make_study(tmp_path / "study", answers, per_item=10, per_rater=PER_RATER)
    assert len(created.rater_tokens) == RATERS
    start = threading.Barrier(RATERS, timeout=120)
    change = threading.Barrier(RATERS, timeout=120)

    with running_server(tmp_path / "study") as base:

        def rater(name: str) -> dict[int, str]:
            rng = random.Random(name)
            sent: dict[int, str] = {}
            with httpx.Client(base_url=base, timeout=60) as c:
                assert c.get(f"/r/{created.rater_tokens[name]}", follow_redirects=True).status_code == 200
                csrf = csrf_of(c.get("/rate/1").text)
                start.wait()  # every rater starts submitting at the same moment
                for position in range(1, PER_RATER + 1):
                    sent[position] = rng.choice("ABCD")
                    r = c.post(f"/rate/{position}", data={"csrf": csrf, "rating": sent[position],
                                                          "comment": f"{name} {position}"})
                    assert r.status_code == 303, r.text
                change.wait()  # then everyone changes one rating at once: an update, never a new row
                position = rng.randint(1, PER_RATER)
                sent[position] = "D" if sent[position] != "D" else "A"
                r = c.post(f"/rate/{position}", data={"csrf": csrf, "rating": sent[position],
                                                      "comment": f"{name} {position}"})
                assert r.status_code == 303, r.text
            return sent

        with ThreadPoolExecutor(max_workers=RATERS) as pool:
            results = dict(zip(created.rater_tokens, pool.map(rater, created.rater_tokens), strict=True))

    rows = Study(tmp_path / "study").export_rows()
    assert len(rows) == RATERS * PER_RATER
    assert len({(r["rater"], r["id"]) for r in rows}) == len(rows)
    by_rater: dict[str, dict[str, str]] = {}
    for row in rows:
        assert row["comment"].startswith(row["rater"] + " ")
        by_rater.setdefault(row["rater"], {})[row["comment"]] = row["rating"]
    expected = {name: {f"{name} {p}": rating for p, rating in sent.items()} for name, sent in results.items()}
    assert by_rater == expected
