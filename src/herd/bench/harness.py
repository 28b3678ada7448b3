"""The bridge to lm-evaluation-harness: herd's wrapped Hugging Face model and one evaluation call per model.

`WrappedHFLM` is lm-eval's own `HFLM` (causal or seq2seq backend) registered as the model type `herd-hf`; it only
rewrites the context of each request through an instruction wrapper before handing the requests to `HFLM`, which
is how the LaMini paper scored its decoder-only students. Everything else (batching, `batch_size=auto`, scoring)
is the harness's own code, so a wrapped run differs from `lm_eval --model hf` in the context text alone.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from herd.students import fill

# The per-task pieces of lm-eval's output; together with the run's `config` block they are its whole result schema.
PER_TASK_KEYS = ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


@register_model("herd-hf")
class WrappedHFLM(HFLM):
    """`HFLM` whose loglikelihood and generation requests see `wrapper` with `{instruction}` = the context.

    lm-eval documents subclassing a model class and overriding its request methods (`loglikelihood`,
    `generate_until`) as the way to change what a model is asked; the requests given to us are left untouched, so
    logged samples keep the task's own text. Rolling loglikelihood (perplexity) has no context and is not wrapped.
    """

    def __init__(self, *args: Any, wrapper: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wrapper = wrapper or None

    def wrap(self, context: str) -> str:
        return fill(self.wrapper, context) if self.wrapper else context

    def wrapped(self, requests: list[Instance]) -> list[Instance]:
        """Copies of `requests` whose first argument (the context) is wrapped; the rest is shared, not copied."""
        if not self.wrapper:
            return requests
        return [dataclasses.replace(r, arguments=(self.wrap(r.args[0]), *r.args[1:])) for r in requests]

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return super().loglikelihood(self.wrapped(requests), disable_tqdm=disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return super().generate_until(self.wrapped(requests), disable_tqdm=disable_tqdm)


def load_lm(source: str, family: str, wrapper: str | None, *, revision: str | None = None,
            gguf_file: str | None = None, device: str = "cpu", dtype: str = "auto",
            batch_size: int | str = "auto", max_batch_size: int = 64) -> WrappedHFLM:
    """The harness's HF model for a folder or Hub id, with the backend herd's students module chose."""
    kwargs: dict[str, Any] = {"backend": family, "device": device, "dtype": dtype, "batch_size": batch_size,
                              "max_batch_size": max_batch_size}
    if revision:
        kwargs["revision"] = revision
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return WrappedHFLM(pretrained=source, wrapper=wrapper, **kwargs)


def evaluate(lm: Any, tasks: list[Any], task_manager: Any, *, num_fewshot: int, limit: int | float | None,
             bootstrap_iters: int = 100000, log_samples: bool = False) -> dict[str, Any]:
    """One `lm_eval.simple_evaluate` call over already built tasks; returns the harness's raw output."""
    import lm_eval

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager, num_fewshot=num_fewshot,
                                  limit=limit, bootstrap_iters=bootstrap_iters, log_samples=log_samples)
    if out is None:  # only a non-zero rank gets None; herd runs one process per bench
        raise RuntimeError("lm-eval returned no results (not rank 0?)")
    return dict(out)


def evaluate_reported(lm: Any, task: Any, metric: str, task_manager: Any, *, num_fewshot: int,
                      limit: int | float | None, bootstrap_iters: int) -> dict[str, Any]:
    """One task through the harness with a standard error for `metric` alone.

    lm-eval computes a stderr for every metric a task defines, bootstrapping the non-mean ones (MRPC's F1 took 10 of
    11 minutes of the paper's suite at lm-eval's default of 100,000 resamples). Here the harness runs with no stderr
    at all and the reported metric's is then computed the harness's own way (`stderr_for_metric`: closed form for a
    mean, `bootstrap_iters` resamples otherwise) from the per-document values; the other metrics' stderr is "N/A".
    """
    out = evaluate(lm, [task], task_manager, num_fewshot=num_fewshot, limit=limit, bootstrap_iters=0,
                   log_samples=True)
    samples = out.pop("samples", {})
    name = task.config.task
    add_stderr(out["results"].get(name, {}), samples.get(name, []), metric, task.aggregation().get(metric),
               bootstrap_iters)
    return out


def add_stderr(results: dict[str, Any], samples: list[dict[str, Any]], metric: str, aggregation: Any,
               bootstrap_iters: int) -> None:
    """Fill `<metric>_stderr,<filter>` in one task's results from its logged samples."""
    from lm_eval.api.metrics import stderr_for_metric

    stderr_fn = stderr_for_metric(aggregation, bootstrap_iters) if aggregation is not None else None
    for key in [k for k in results if k.partition(",")[0] == metric]:
        flt = key.partition(",")[2]
        items = [s[metric] for s in samples if s.get("filter") == flt and metric in s]
        results[f"{metric}_stderr,{flt}"] = stderr_fn(items) if stderr_fn and len(items) > 1 else "N/A"


def split_by_task(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The harness output cut into one piece per task, each in the harness's own schema, for the cache."""
    shared = {"config": output.get("config", {}), "date": output.get("date"), "git_hash": output.get("git_hash"),
              "lm_eval_version": harness_version()}
    pieces: dict[str, dict[str, Any]] = {}
    for task in output.get("results", {}):
        pieces[task] = {key: {task: output[key][task]} for key in PER_TASK_KEYS if task in output.get(key, {})}
        pieces[task].update(shared)
    return pieces


def merge_pieces(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-task pieces of one model put back into one harness-shaped output (the first piece's run config)."""
    merged: dict[str, Any] = {key: {} for key in PER_TASK_KEYS}
    for piece in pieces:
        for key in PER_TASK_KEYS:
            merged[key].update(piece.get(key, {}))
    if pieces:
        merged["config"] = pieces[0].get("config", {})
        merged["lm_eval_version"] = pieces[0].get("lm_eval_version")
        merged["runs"] = sorted({str(p.get("date")) for p in pieces})
    return merged


def harness_version() -> str:
    from importlib import metadata

    return metadata.version("lm_eval")
