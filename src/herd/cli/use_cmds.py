"""Using a model: `herd generate` (answer a file in batches), `herd chat` (terminal), `herd serve` (OpenAI API)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from herd.cli import ConfigOpt, QuietOpt, SetOpt, app, load, options, say

DeviceOpt = Annotated[str | None, typer.Option(help="torch device: auto, cpu, cuda, cuda:1, mps.")]
DtypeOpt = Annotated[str | None, typer.Option(help="torch dtype: auto, float32, bfloat16, float16.")]



@app.command()
def generate(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Checkpoint folder or Hub id.")] = None,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Instruction file (JSONL/CSV/Parquet).")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder (default <run>/generate).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest answer, in new tokens.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="1.0 = none.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="A string that ends an answer (repeatable).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="Token budget per batch.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Largest batch, in prompts.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name written to the rows.")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    shard: Annotated[str | None, typer.Option("--shard", help="Run shard i/n (e.g. 0/4).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """A model answers every instruction of a file, in batches; resumes after a kill."""
    from herd import generate as stage

    overrides = options(set_, "generate", model=model, input=input, out=out, max_new_tokens=max_new_tokens,
                      temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty, stop=stop,
                      seed=seed, batch_tokens=batch_tokens, max_batch=max_batch, name=name, device=device,
                      dtype=dtype)
    if shard is not None:
        overrides.append(f"run.shard={json.dumps(shard)}")
    folder = stage.run(load(config, overrides, quiet))
    say(f"generate: {folder}/data.jsonl")


@app.command()
def chat(
    model: Annotated[str, typer.Option("--model", "-m", help="Checkpoint folder or Hub id.")],
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in new tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.9,
    repetition_penalty: Annotated[float, typer.Option(help="1.0 = none.")] = 1.0,
    system: Annotated[str, typer.Option(help="A system message.")] = "",
    device: Annotated[str, typer.Option(help="torch device: auto, cpu, cuda, cuda:1, mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="torch dtype: auto, float32, bfloat16, float16.")] = "auto",
) -> None:
    """Chat with a model in the terminal; answers stream as they are generated."""
    from herd.chat import run_chat
    from herd.textgen import GenParams

    params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       repetition_penalty=repetition_penalty)
    run_chat(model, params, system=system, device=device, dtype=dtype)


@app.command()
def serve(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Checkpoint folder or Hub id, optionally NAME=PATH (repeatable).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the API key clients must send.")] = None,
    max_batch: Annotated[int | None, typer.Option(help="Most sequences per batch (1 = one at a time).")] = None,
    batch_wait_ms: Annotated[float | None, typer.Option(help="How long to wait for a batch to fill.")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Waiting requests per model before 503.")] = None,
    max_tokens_limit: Annotated[int | None, typer.Option(help="Largest max_tokens a request may ask.")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """An OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models) for the models."""
    from herd.serve import serve_forever

    overrides = options(set_, "serve", models=model, host=host, port=port, api_key_env=api_key_env,
                      max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_queue=max_queue,
                      max_tokens_limit=max_tokens_limit, device=device, dtype=dtype)
    serve_forever(load(config, overrides, quiet))
