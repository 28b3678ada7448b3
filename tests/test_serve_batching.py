"""herd serve's continuous batching: greedy answers under concurrency equal one-at-a-time answers, a short request
finishes while a long one is still decoding, seeded samples do not depend on the batch, and streaming works for
every `n` and temperature (decoder-only models through the step loop, encoder-decoders through request-level
batches)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from herd.config import ServeConfig
from herd.serve import ServerThread, create_app
from herd.textgen import GenParams

WORDS = "the sun is a big red dog and a small cat with one blue book".split()


@pytest.fixture(scope="module")
def url(tiny_models):
    specs = [f"{name}={tiny_models[name]}" for name in ("gpt2", "llama", "gptneo", "t5")]
    with ServerThread(create_app(ServeConfig(models=specs, max_tokens_limit=64))) as base:
        yield base


def one_at_a_time(model_dir, prompt, max_new_tokens):
    from herd.students import load_student
    from herd.textgen import generate_texts

    student = load_student(str(model_dir))
    return generate_texts(student.model, student.tokenizer, [prompt], GenParams(max_new_tokens=max_new_tokens))[0]


@pytest.mark.parametrize("name", ["gpt2", "llama", "gptneo"])
def test_concurrent_mixed_requests_equal_one_at_a_time(url, tiny_models, name):
    jobs = [(" ".join(WORDS[i % 5: i % 5 + 2 + (i * 3) % 9]), 3 + (i * 7) % 30) for i in range(10)]
    expected = [one_at_a_time(tiny_models[name], p, m) for p, m in jobs]

    def ask(job):
        prompt, max_tokens = job
        r = httpx.post(f"{url}/completions", timeout=120,
                       json={"model": name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(10) as pool:
        bodies = list(pool.map(ask, jobs))
    assert [b["choices"][0]["text"] for b in bodies] == [e.text for e in expected]
    assert [b["usage"]["completion_tokens"] for b in bodies] == [e.completion_tokens for e in expected]
    assert [b["choices"][0]["finish_reason"] for b in bodies] == [e.finish_reason for e in expected]
    stats = httpx.get(url.replace("/v1", "/health")).json()["models"][name]
    assert stats["largest_batch"] > 1  # rows really shared forward passes


def test_short_request_is_not_held_behind_a_long_one(tiny_models):
    """The long request is already decoding when the short one arrives; the short one ends first."""
    from herd.serve.continuous import ContinuousBatcher
    from herd.students import load_student

    student = load_student(str(tiny_models["gpt2"]))
    ids = student.tokenizer("the sun is", add_special_tokens=False)["input_ids"]
    order = []

    async def scenario():
        batcher = ContinuousBatcher(student.model, student.tokenizer, max_batch=8)
        batcher.start()

        async def ask(tag, max_tokens, delay):
            await asyncio.sleep(delay)
            out = await batcher.generate([ids], GenParams(max_new_tokens=max_tokens))
            order.append(tag)
            return out[0]

        long, short = await asyncio.gather(ask("long", 200, 0), ask("short", 3, 0.05))
        steps = batcher.stats.batches
        await batcher.close()
        return long, short, steps

    long, short, steps = asyncio.run(scenario())
    assert order == ["short", "long"]
    assert long.completion_tokens == 200 and short.completion_tokens == 3
    assert steps < 200 + 3  # the short request's tokens came from steps the long one took anyway
    assert short.text == one_at_a_time(tiny_models["gpt2"], "the sun is", 3).text


def test_seeded_samples_do_not_depend_on_the_batch(url):
    body = {"model": "llama", "prompt": "write a poem", "max_tokens": 12, "temperature": 1.0, "seed": 7, "n": 3}
    alone = httpx.post(f"{url}/completions", json=body, timeout=60).json()
    crowd = {**body, "seed": 99}
    with ThreadPoolExecutor(4) as pool:
        noise = [pool.submit(httpx.post, f"{url}/completions", json=crowd, timeout=60) for _ in range(3)]
        again = httpx.post(f"{url}/completions", json=body, timeout=60).json()
        [f.result() for f in noise]
    texts = [c["text"] for c in alone["choices"]]
    assert texts == [c["text"] for c in again["choices"]]
    assert len(set(texts)) > 1  # n samples, each its own


@pytest.mark.parametrize("name", ["gpt2", "t5"])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_streaming_works_for_every_n_and_temperature(url, name, temperature):
    body = {"model": name, "messages": [{"role": "user", "content": "write a story"}], "max_tokens": 10, "n": 3,
            "temperature": temperature, "seed": 5, "stream": True}
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        chunk = json.loads(event)
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert sorted(finishes) == [0, 1, 2] and set(finishes.values()) <= {"stop", "length"}
    plain = httpx.post(f"{url}/chat/completions", json={**body, "stream": False}, timeout=120).json()
    assert [texts[i] for i in range(3)] == [c["message"]["content"] for c in plain["choices"]]
    if temperature > 0 and name == "gpt2":
        assert len({texts[i] for i in range(3)}) > 1


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_rows_join_finished_slots_and_leave_without_rebuilding_the_cache(tiny_models, name):
    """Driven step by step: a newcomer no wider than the batch is written into a finished row's slot, a finished row
    that nobody replaces is filled by the last row, a wider newcomer rebuilds the cache; every answer equals its
    one-at-a-time answer."""
    import torch

    from herd.serve.decode import DecodeLoop, Row
    from herd.students import load_student

    student = load_student(str(tiny_models[name]))
    tok = student.tokenizer
    loop = DecodeLoop(student.model, tok, max_batch=4)
    rebuilds = []
    full = loop._rebuild
    loop._rebuild = lambda groups: (rebuilds.append(groups), full(groups))[1]
    jobs = {"long": (" ".join(WORDS[:12]), 40), "short": ("the sun", 2), "joins": ("a small cat with", 6),
            "pair": ("the big red dog and", 9), "ends": ("one blue", 3), "wide": (" ".join(WORDS * 3), 5)}

    def make(prompt, max_tokens):  # log-probs of each chosen token: they show a wrong key or value, where the
        ids = tok(prompt, add_special_tokens=False)["input_ids"]  # tiny model's greedy text might not
        return Row(ids, GenParams(max_new_tokens=max_tokens), lambda *a: None, top_logprobs=0)

    rows = {k: make(*job) for k, job in jobs.items()}

    def steps(until, loop=loop):
        with torch.inference_mode():
            while not until():
                loop._collect(block=False)
                loop._step()

    for key in ("long", "short", "ends"):
        loop.submit(rows[key])
    steps(lambda: bool(rows["short"].finish))
    assert len(rebuilds) == 1  # the first rows make the cache
    loop.submit(rows["joins"])  # one prefill (longest first, a padded column for "joins"), narrower than the batch:
    loop.submit(rows["pair"])  # "pair" takes the short row's slot, "joins" a free one
    steps(lambda: rows["joins"] in loop.rows)
    assert len(rebuilds) == 1 and loop.rows.index(rows["pair"]) == 1 and loop.rows.index(rows["joins"]) == 3
    steps(lambda: bool(rows["ends"].finish) and rows["ends"] not in loop.rows)
    assert len(rebuilds) == 1  # the last row moved into the finished row's slot
    running = [rows[k] for k in ("long", "pair", "joins") if not rows[k].finish]
    assert len(loop.rows) == len(running) >= 2 and all(any(r is x for x in loop.rows) for r in running)
    loop.submit(rows["wide"])
    steps(lambda: rows["wide"] in loop.rows)
    assert len(rebuilds) == 2
    steps(lambda: all(r.finish for r in rows.values()) and not loop.rows)
    for key, (prompt, max_tokens) in jobs.items():
        assert rows[key].text == one_at_a_time(tiny_models[name], prompt, max_tokens).text, key
        alone, single = make(prompt, max_tokens), DecodeLoop(student.model, tok, max_batch=1)
        single.submit(alone)
        steps(lambda alone=alone: bool(alone.finish), loop=single)
        assert [t for t, _, _ in rows[key].logprobs] == [t for t, _, _ in alone.logprobs], key
        assert [p for _, p, _ in rows[key].logprobs] == pytest.approx([p for _, p, _ in alone.logprobs], abs=1e-4)
