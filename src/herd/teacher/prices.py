"""USD per million tokens (prompt, completion) for teachers people use, so `herd plan` and `herd usage` can show a
cost. A config's `teacher.price_*_per_mtok` overrides it; local and unknown models cost 0. Prices as published by
the providers; check them before a large run.
"""

from __future__ import annotations

from herd.config import TeacherConfig

PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-3.5-turbo-0125": (0.50, 1.50),
    "gpt-3.5-turbo-0301": (1.50, 2.00),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def price_for(model: str, input_override: float = -1.0, output_override: float = -1.0) -> tuple[float, float]:
    """(prompt, completion) USD per million tokens."""
    base = PRICES.get(model, (0.0, 0.0))
    return (
        input_override if input_override >= 0 else base[0],
        output_override if output_override >= 0 else base[1],
    )


def teacher_prices(tc: TeacherConfig) -> tuple[float, float]:
    """What a configured teacher costs: a model running here is free unless the config sets a price."""
    if tc.backend in ("local", "fake", "llamacpp") and tc.price_input_per_mtok < 0:
        return (0.0, 0.0)
    return price_for(tc.model, tc.price_input_per_mtok, tc.price_output_per_mtok)


def cost(prices: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1_000_000
