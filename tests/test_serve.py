"""herd serve: a real uvicorn server on 127.0.0.1 answering the official openai client and herd's own openai teacher
backend, for every family; bad requests get OpenAI-format 4xx errors and the server keeps serving; API key,
backpressure, batching and the CLI's one-line error for a folder that is not a model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from herd.config import ServeConfig, TeacherConfig
from herd.serve import ServerThread, create_app
from herd.textgen import GenParams

KEY_ENV = "HERD_TEST_SERVE_KEY"
KEY = "sk-test-serve-0123456789"


WRAPPER = "Below is an instruction that describes a task .\n### Instruction :\n{instruction}\n### Response :"


@pytest.fixture(scope="module")
def student_dir(tiny_models, tmp_path_factory):
    """A herd checkpoint (what `herd train` saves): tiny GPT-2 with the wrapper in herd.json and its chat template."""
    from herd.students import load_student, save_student

    base = load_student(str(tiny_models["gpt2"]))
    return save_student(base.model, base.tokenizer, "causal", tmp_path_factory.mktemp("student") / "s",
                        {"wrapper": WRAPPER, "base_model": "tiny-gpt2"})


@pytest.fixture(scope="module")
def server(tiny_models, student_dir):
    os.environ[KEY_ENV] = KEY
    specs = [f"{name}={tiny_models[name]}" for name in ("gpt2", "llama", "t5")] + [f"student={student_dir}"]
    cfg = ServeConfig(models=specs,
                      api_key_env=KEY_ENV, max_body_bytes=20_000, max_tokens_limit=64, batch_wait_ms=20)
    try:
        with ServerThread(create_app(cfg)) as url:
            yield url
    finally:
        os.environ.pop(KEY_ENV, None)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


def answers(model_dir, instructions, max_new_tokens):
    from herd.generate import answer_all

    return [o.text for o in answer_all(str(model_dir), instructions, GenParams(max_new_tokens=max_new_tokens))]


def test_openai_client_chat_and_completions(server, tiny_models):
    from openai import OpenAI

    client = OpenAI(base_url=server, api_key=KEY, max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["gpt2", "llama", "student", "t5"]
    # seq2seq: the system message and the last user message become one instruction, blank line between
    expected = answers(tiny_models["t5"], ["be brief\n\nlist three animals"], 8)[0]
    assert expected
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "list three animals"}]
    done = client.chat.completions.create(model="t5", messages=messages, max_tokens=8, temperature=0, n=2)
    assert [c.message.content for c in done.choices] == [expected, expected]
    assert done.usage.prompt_tokens > 0 and done.usage.total_tokens > done.usage.prompt_tokens
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="t5", messages=messages, max_tokens=8, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == expected and len([p for p in pieces if p]) > 1
    raw = answers(tiny_models["gpt2"], ["the sun is"], 6)[0]  # gpt2 has no wrapper or template: the bare text
    text = client.completions.create(model="gpt2", prompt="the sun is", max_tokens=6, temperature=0)
    assert text.choices[0].text == raw
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="gpt2", prompt="the sun is", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == raw


def test_multi_turn_model_sees_the_history(client, tiny_models):
    from herd.students import load_student
    from herd.textgen import generate_texts

    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"},
                {"role": "user", "content": "write a poem"}]
    student = load_student(str(tiny_models["llama"]))
    prompt = student.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = generate_texts(student.model, student.tokenizer, [prompt], GenParams(max_new_tokens=6))[0]
    body = client.post("/chat/completions", json={"model": "llama", "messages": messages, "max_tokens": 6,
                                                  "temperature": 0}).json()
    assert body["choices"][0]["message"]["content"] == expected.text
    assert body["usage"]["prompt_tokens"] == expected.prompt_tokens
    assert {m["id"]: m["multi_turn"] for m in client.get("/models").json()["data"]} == {
        "gpt2": False, "llama": True, "t5": False, "student": False}


def test_herd_student_gets_its_wrapper_and_one_instruction(client, student_dir):
    """A herd checkpoint is single-turn: system + last user message, through the wrapper from herd.json."""
    from herd.students import load_student
    from herd.textgen import generate_texts

    student = load_student(str(student_dir))
    prompt = WRAPPER.replace("{instruction}", "be brief\n\nwrite a poem")
    expected = generate_texts(student.model, student.tokenizer, [prompt], GenParams(max_new_tokens=6))[0]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "an earlier turn"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "write a poem"}]
    body = client.post("/chat/completions", json={"model": "student", "messages": messages, "max_tokens": 6,
                                                  "temperature": 0}).json()
    assert body["choices"][0]["message"]["content"] == expected.text
    assert body["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_concurrent_requests_each_get_their_own_answer(client, tiny_models):
    words = "the sun is a big red dog and".split()
    prompts = [" ".join(words[: 2 + i]) for i in range(6)]
    expected = answers(tiny_models["gpt2"], prompts, 8)

    def ask(prompt: str) -> str:
        r = client.post("/chat/completions", json={"model": "gpt2", "max_tokens": 8, "temperature": 0,
                                                   "messages": [{"role": "user", "content": prompt}]})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(ask, prompts)) == expected


BAD = [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "model"),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}', 404, "model"),
    (b'{"model": "gpt2", "messages": []}', 400, "messages"),
    (b'{"model": "gpt2", "messages": "hi"}', 400, "messages"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": 5}]}', 400, "messages.0.content"),
    (b'{"model": "gpt2", "messages": [{"role": "wizard", "content": "hi"}]}', 400, "messages.0.role"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "  "}]}', 400, "messages"),
    (b'{"model": "gpt2", "messages": [{"role": "system", "content": "only a system"}]}', 400, "messages"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400, "temperature"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "n": true}', 400, "n"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', 400, "max_tokens"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}', 400, "max_tokens"),
    (json.dumps({"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 17}).encode(), 400,
     "stop"),
    (b'{"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "logprobs": true}', 400, "logprobs"),
    (json.dumps({"model": "gpt2", "messages": [{"role": "user", "content": "the sun " * 200}]}).encode(), 400,
     "messages"),
    (json.dumps({"model": "gpt2", "messages": [{"role": "user", "content": "x" * 30_000}]}).encode(), 413, None),
]


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(client, server):
    for body, status, param in BAD:
        r = client.post("/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (body[:80], r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert error["param"] == param, (body[:80], error)
    assert client.post("/completions", json={"model": "t5", "prompt": [], "max_tokens": 2}).status_code == 400
    assert client.post("/completions", json={"model": "t5", "prompt": [3, 10], "max_tokens": 2}).status_code == 200
    assert client.post("/completions", json={"model": "t5", "prompt": [[3, 10], []]}).status_code == 400
    too_long = client.post("/completions", json={"model": "gpt2", "prompt": "the sun " * 200})
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert client.get("/chat/completions").status_code == 405
    assert client.get("/nothing-here").json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{server}/models").status_code == 401  # no key
    wrong = httpx.get(f"{server}/models", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert KEY not in wrong.text
    good = client.post("/chat/completions", json={"model": "gpt2", "max_tokens": 3,
                                                  "messages": [{"role": "user", "content": "hi"}]})
    assert good.status_code == 200 and good.json()["choices"][0]["message"]["role"] == "assistant"
    health = httpx.get(server.replace("/v1", "/health")).json()  # open without a key
    assert health["status"] == "ok" and health["models"]["gpt2"]["failed"] == 0


def test_client_that_leaves_mid_stream_does_not_break_the_server(client):
    body = {"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, "stream": True}
    with client.stream("POST", "/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = next(r.iter_lines())
        assert first.startswith("data: {")
    with client.stream("POST", "/chat/completions", json={**body, "max_tokens": 4,
                                                         "stream_options": {"include_usage": True}}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")


def test_herd_openai_teacher_uses_the_server(server, client):
    """A served student is a teacher (or a judge) for herd's own openai backend, through the engine."""
    from herd.teacher import Request, open_engine

    cfg = TeacherConfig(backend="openai", model="llama", base_urls=[server], api_key_env=KEY_ENV, max_attempts=2)
    engine = open_engine(cfg, None)
    results = []
    try:
        engine.map([Request.chat(f"write {w}", "be brief", max_tokens=5, temperature=0.0, tag=w)
                    for w in ("a poem", "a story")], results.append, progress=False)
    finally:
        engine.close()
    direct = client.post("/chat/completions", json={
        "model": "llama", "max_tokens": 5, "temperature": 0,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "write a poem"}]}).json()
    by_tag = {r.request.tag: r for r in results}
    assert all(r.ok for r in results) and len(results) == 2
    assert by_tag["a poem"].text == direct["choices"][0]["message"]["content"]
    assert by_tag["a poem"].completion_tokens == direct["usage"]["completion_tokens"]


def test_full_queue_answers_503_with_retry_after(tiny_models):
    cfg = ServeConfig(models=[str(tiny_models["gpt2"])], max_batch=1, max_queue=1, batch_wait_ms=0)
    name = str(tiny_models["gpt2"])
    with ServerThread(create_app(cfg)) as url:
        start = threading.Barrier(8)

        def ask(_: int) -> httpx.Response:
            start.wait()
            return httpx.post(f"{url}/completions", timeout=120,
                              json={"model": name, "prompt": "the sun", "max_tokens": 200, "temperature": 0})

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(ask, range(8)))
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(r.headers["Retry-After"] == "1" for r in busy)
        assert busy[0].json()["error"]["code"] == "overloaded"
        assert {r.status_code for r in responses} == {200, 503}
        assert httpx.get(url.replace("/v1", "/health")).json()["models"][name]["rejected"] == len(busy)
        after = httpx.post(f"{url}/completions", json={"model": name, "prompt": "hi", "max_tokens": 2}, timeout=60)
        assert after.status_code == 200


def test_batcher_groups_waiting_requests_with_equal_parameters(tiny_models):
    from herd.serve.batcher import Batcher
    from herd.students import load_student
    from herd.textgen import generate_texts

    student = load_student(str(tiny_models["gpt2"]))
    greedy, sampled = GenParams(max_new_tokens=5), GenParams(max_new_tokens=5, temperature=0.9, seed=3)

    def batch(prompts, params):
        return generate_texts(student.model, student.tokenizer, prompts, params)

    async def scenario():
        batcher = Batcher(batch, max_batch=8, wait_s=0.01)
        batcher.start()
        prompts = ["the sun", "a big red dog and a cat", "write", "one two three four"]
        jobs = [batcher.generate([p], greedy) for p in prompts] + [batcher.generate(["the sun"], sampled) for _ in "ab"]
        outs = await asyncio.gather(*jobs)
        await batcher.close()
        return prompts, outs, batcher.stats

    prompts, outs, stats = asyncio.run(scenario())
    alone = [batch([p], greedy)[0].text for p in prompts]
    assert [o[0].text for o in outs[:4]] == alone
    assert outs[4][0].text == outs[5][0].text == batch(["the sun"], sampled)[0].text  # seeded: batch-independent
    assert stats.batches == 3 and stats.largest_batch == 4 and stats.requests == 6


def test_cli_not_a_model_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "herd", "serve", "--model", str(tmp_path / "empty"), "--port", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"herd: error: {tmp_path / 'empty'}: not a model")


def test_cli_serves_until_stopped(tiny_models, student_dir, tmp_path):
    """`herd serve` itself: NAME=PATH models, an API key from the environment, then a clean stop on Ctrl-C."""
    from openai import OpenAI

    port = _free_port()
    env = {**os.environ, KEY_ENV: KEY}
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "herd", "serve", "--model", f"t5={tiny_models['t5']}",
                             "--model", f"student={student_dir}", "--port", str(port), "--api-key-env", KEY_ENV,
                             "-q"], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    try:
        banner = proc.stdout.readline()
        assert banner.strip() == f"herd serve: http://127.0.0.1:{port}/v1  models: t5, student", (
            proc.poll(), (tmp_path / "stderr.txt").read_text()[-2000:])
        _wait_for(f"http://127.0.0.1:{port}/health")
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        reply = client.chat.completions.create(model="student", max_tokens=3, temperature=0,
                                               messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].finish_reason in ("stop", "length") and reply.model == "student"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0 and proc.stdout.read().strip() == "herd serve: stopped"


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
