"""herd serve at its edges: log-probs and echo are right (checked against the model's own forward pass, through the
official openai client), bad input is an OpenAI-style 400 naming the parameter, a handled error (a 500 too) leaves
the keep-alive connection usable, and every model has a prompt bound (the model's, else serve.default_context)."""

from __future__ import annotations

import http.client
import json

import pytest

from herd.config import ServeConfig
from herd.serve import ServerThread
from herd.serve.app import build_app
from herd.serve.loaded import load_models


@pytest.fixture(scope="module")
def served(tiny_models):
    specs = [f"{name}={tiny_models[name]}" for name in ("gpt2", "t5")]
    cfg = ServeConfig(models=specs, max_tokens_limit=64, default_context=64)
    models = load_models(cfg)
    with ServerThread(build_app(models, cfg)) as url:
        yield url, models


def forward_logprobs(model_dir, ids):
    import torch

    from herd.students import load_student

    student = load_student(str(model_dir))
    with torch.inference_mode():
        logits = student.model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def test_openai_client_echo_logprobs_and_token_prompts(served, tiny_models):
    from openai import OpenAI

    url, _ = served
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    ids = [3, 40, 41, 42, 43]
    logp = forward_logprobs(tiny_models["gpt2"], ids)
    scored = client.completions.create(model="gpt2", prompt=ids, max_tokens=0, echo=True, logprobs=2)
    lp = scored.choices[0].logprobs
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for t in range(1, len(ids)):
        assert lp.token_logprobs[t] == pytest.approx(float(logp[t - 1, ids[t]]), abs=1e-5)
        assert len(lp.top_logprobs[t]) <= 2
        assert max(lp.top_logprobs[t].values()) == pytest.approx(float(logp[t - 1].max()), abs=1e-5)
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    assert scored.usage.prompt_tokens == len(ids) and scored.usage.completion_tokens == 0
    # generated tokens: greedy, so each chosen token is the top alternative; two prompts as lists of ids
    both = client.completions.create(model="gpt2", prompt=[ids, ids[:3]], max_tokens=4, temperature=0, logprobs=1,
                                     echo=True)
    assert len(both.choices) == 2
    first = both.choices[0].logprobs
    assert len(first.tokens) == len(ids) + 4
    nxt = int(logp[-1].argmax())
    assert first.token_logprobs[len(ids)] == pytest.approx(float(logp[-1, nxt]), abs=1e-5)
    for tok, top in zip(first.token_logprobs[len(ids):], first.top_logprobs[len(ids):], strict=True):
        assert tok == pytest.approx(max(top.values()), abs=1e-6)
    plain = client.completions.create(model="gpt2", prompt=ids, max_tokens=4, temperature=0)
    assert both.choices[0].text.endswith(plain.choices[0].text) and plain.choices[0].logprobs is None


def _conn(url: str) -> http.client.HTTPConnection:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return http.client.HTTPConnection(host, int(port), timeout=60)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, dict]:
    conn.request("POST", f"/v1/{path}", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def _body(**fields) -> bytes:
    return json.dumps({"model": "gpt2", "prompt": "the sun", "max_tokens": 2, **fields}).encode()


BAD = [
    ("completions", _body(prompt=[3, 10, 100_000]), 400, "prompt", "invalid_token_id"),
    ("completions", _body(prompt=[[3, 10], [-1]]), 400, "prompt", "invalid_token_id"),
    ("completions", _body(prompt=[[3, 10], []]), 400, "prompt", None),
    ("completions", _body(logprobs=6), 400, "logprobs", None),
    ("completions", _body(logprobs=True), 400, "logprobs", None),
    ("completions", _body(model="t5", logprobs=1), 400, "logprobs", None),
    ("completions", _body(echo=True, logprobs=1, stream=True), 400, "stream", None),
    ("completions", _body(prompt=[3] * 300, max_tokens=0, echo=True), 400, "prompt", "context_length_exceeded"),
    ("completions", _body(prompt=[3] * 250, max_tokens=10), 400, "max_tokens", "context_length_exceeded"),
    ("completions", _body(model="t5", prompt="the sun " * 40), 400, "prompt", "context_length_exceeded"),
    ("completions", _body(seed=2**70), 400, "seed", None),
    ("completions", _body(seed=-1), 400, "seed", None),
    ("chat/completions", json.dumps({"model": "gpt2", "messages": [{"role": "user", "content": "hi"}],
                                     "echo": True}).encode(), 400, "echo", None),
    ("chat/completions", json.dumps({"model": "gpt2", "messages": [{"role": "user", "content": "hi"}],
                                     "seed": 2**70}).encode(), 400, "seed", None),
    ("completions", b"[" * 100_000 + b"]" * 100_000, 400, None, None),
]


def test_bad_input_is_a_400_naming_the_parameter_on_one_kept_alive_connection(served):
    url, _ = served
    conn = _conn(url)
    status, body = _post(conn, "completions", _body())
    assert status == 200
    port = conn.sock.getsockname()[1]
    for path, raw, want, param, code in BAD:
        status, body = _post(conn, path, raw)
        assert status == want, (raw[:80], body)
        assert body["error"]["param"] == param and body["error"]["code"] == code, (raw[:80], body)
        assert conn.sock is not None and conn.sock.getsockname()[1] == port, "the connection was closed"
    status, body = _post(conn, "completions", _body())
    assert status == 200 and conn.sock.getsockname()[1] == port
    conn.close()


def test_a_500_leaves_the_connection_usable(served, monkeypatch):
    url, models = served

    async def broken(*args, **kwargs):
        raise RuntimeError("simulated fault")

    conn = _conn(url)
    assert _post(conn, "completions", _body())[0] == 200
    port = conn.sock.getsockname()[1]
    monkeypatch.setattr(models["gpt2"].batcher, "generate", broken)
    status, body = _post(conn, "completions", _body())
    assert status == 500 and body["error"]["type"] == "server_error" and "simulated fault" in body["error"]["message"]
    monkeypatch.undo()
    status, body = _post(conn, "completions", _body())
    assert status == 200 and conn.sock.getsockname()[1] == port
    conn.close()


def test_every_model_has_a_prompt_bound(served):
    url, models = served
    conn = _conn(url)
    conn.request("GET", "/v1/models")
    cards = {m["id"]: m for m in json.loads(conn.getresponse().read())["data"]}
    assert cards["gpt2"]["context_length"] == 256  # the model's own (n_positions)
    assert cards["t5"]["context_length"] == 64  # T5 declares none: serve.default_context
    status, body = _post(conn, "completions", _body(model="t5", prompt="the sun " * 40))
    assert status == 400 and "serve.default_context" in body["error"]["message"]
    assert _post(conn, "completions", _body(model="t5", prompt="the sun " * 10))[0] == 200
    conn.close()
