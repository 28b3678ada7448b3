"""herd serve: an OpenAI-compatible HTTP server for herd students and any Hugging Face causal or seq2seq model.

Reads model checkpoints (the `[serve]` config section); writes nothing. Endpoints: `/v1/models`,
`/v1/chat/completions`, `/v1/completions` (streaming over SSE and not), `/health`. Concurrent requests for a model
are batched together (batcher.py); limits, the optional API key and backpressure are in app.py; the wire format
and errors in protocol.py; loading and prompt rules in loaded.py.

`serve_forever(cfg)` is what the CLI runs; `ServerThread` runs an app on 127.0.0.1 in a background thread (tests
and benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from herd.config import Config, ServeConfig
from herd.errors import UserError


def api_key(cfg: ServeConfig) -> str | None:
    """The key clients must send, from the environment variable `serve.api_key_env` names (None = no key)."""
    if not cfg.api_key_env:
        return None
    value = os.environ.get(cfg.api_key_env, "")
    if not value:
        raise UserError(f"serve.api_key_env = {cfg.api_key_env!r}: that environment variable is not set or empty")
    return value


def create_app(cfg: ServeConfig) -> Any:
    """Load the models and build the app (the key and every model checked before anything listens)."""
    from herd.serve.app import build_app
    from herd.serve.loaded import load_models

    key = api_key(cfg)
    return build_app(load_models(cfg), cfg, key)


def serve_forever(cfg: Config) -> None:
    """Run the server until interrupted."""
    import uvicorn

    sc = cfg.serve
    app = create_app(sc)
    print(f"herd serve: http://{sc.host}:{sc.port}/v1  models: {', '.join(app.state.model_names)}", flush=True)
    # uvicorn re-raises Ctrl-C after its graceful shutdown; for a server that is the normal way out
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=sc.host, port=sc.port, log_level="warning" if cfg.run.quiet else "info")
    print("herd serve: stopped", flush=True)


class ServerThread:
    """`with ServerThread(app) as url:` serves `app` on a free 127.0.0.1 port in a thread; url ends with /v1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
