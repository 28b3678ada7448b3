"""Using a model: `herd generate` (answer a file in batches), `herd chat` (terminal), `herd serve` (OpenAI API)."""

from __future__ import annotations

from typing import Annotated

import typer

from herd.cli.command import ConfigOpt, QuietOpt, SetOpt, app, load, options, say

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
                      dtype=dtype) + options(None, "run", shard=shard)
    folder = stage.run(load(config, overrides, quiet))
    say(f"generate: {folder}/data.jsonl")


@app.command()
def chat(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Checkpoint folder or Hub id (or chat.model in the run file).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest answer, in new tokens (default 256).")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy (default 0.7).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (default 0.9).")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="1.0 = none (the default).")] = None,
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Chat with a model in the terminal; answers stream as they are generated."""
    from herd.errors import UserError

    overrides = options(set_, "chat", model=model, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, repetition_penalty=repetition_penalty, system=system, device=device, dtype=dtype)
    cc = load(config, overrides).chat
    if not cc.model:
        raise UserError("chat.model: no model to talk to (give --model, or set chat.model in the run file)")
    from herd.chat import run_chat
    from herd.textgen import GenParams

    params = GenParams(max_new_tokens=cc.max_new_tokens, temperature=cc.temperature, top_p=cc.top_p,
                       repetition_penalty=cc.repetition_penalty)
    run_chat(cc.model, params, system=cc.system, device=cc.device, dtype=cc.dtype)


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
