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
