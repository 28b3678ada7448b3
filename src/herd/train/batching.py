"""Token-budget micro-batches with a small, known set of tensor shapes (issue 12).

A micro-batch holds at most `train.batch_tokens` token positions (padding included) and at most the step's share of
examples. Decoder-only examples are packed into rows of one fixed length (position ids restart per example, no
attention across examples); encoder-decoder examples (and decoders that are not packed) are padded to at most 8
length buckets (multiples of 16, chosen from the data to waste the least padding), each with a fixed number of
rows. An epoch therefore sees
at most 16 distinct shapes, and the number of micro-batches per epoch is the same in every epoch, which the Trainer's
step counting and resume rely on.

The order depends only on (seed, epoch): packed micro-batches are formed once per run (as TRL's packing does) and
shuffled each epoch; bucketed examples are shuffled inside their bucket each epoch. Reads token lengths; writes
nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.errors import UserError
from herd.students import family_spec

BUCKET = 16  # every bucket length is a multiple of this (16 up to 128, 64 up to 512, then 128); rows of 64
ROW = 64
MAX_BUCKETS = 8  # full micro-batch + one tail per bucket: at most 16 shapes
# measured on CPU (benchmarks/train_throughput.py): per token, 1024-token micro-batches ran faster than 2048 or 4096
DEFAULT_BATCH_TOKENS = {"cpu": 1024, "cuda": 16384, "mps": 8192}


def round_up(n: int, step: int = ROW) -> int:
    return max(step, -(-n // step) * step)


def bucket_length(n: int) -> int:
    """The smallest candidate bucket length that holds n tokens: fine steps where LaMini's lengths are dense."""
    return round_up(n, 16 if n <= 128 else 64 if n <= 512 else 128)


def default_batch_tokens(device_kind: str) -> int:
    return DEFAULT_BATCH_TOKENS.get(device_kind, DEFAULT_BATCH_TOKENS["cpu"])


@dataclass
class Layout:
    """How one student's batches are cut. kind: 'packed' (rows of row_length, at most `rows` per micro-batch) or
    'buckets' (bucket id -> (input length, label length) and rows per micro-batch)."""

    kind: str
    batch_tokens: int
    max_examples: int
    row_length: int = 0
    rows: int = 0
    flat: bool = False  # packed for flash-attention varlen: the rows of a micro-batch as one long row
    buckets: list[tuple[int, int]] = field(default_factory=list)
    bucket_rows: list[int] = field(default_factory=list)
    assignment: list[int] = field(default_factory=list)  # example -> bucket id

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "batch_tokens": self.batch_tokens,
                               "max_examples_per_micro_batch": self.max_examples}
        if self.kind == "packed":
            out.update(row_length=self.row_length, rows=self.rows, flat=self.flat)
        else:
            out.update(buckets=[list(b) for b in self.buckets], rows_per_bucket=self.bucket_rows)
        return out


def check_budget(batch_tokens: int, costs: Sequence[int], real: Sequence[int], where: Sequence[str]) -> None:
    """batch_tokens must hold the longest example, padding included (UserError naming it and its length)."""
    longest = max(range(len(costs)), key=lambda i: (costs[i], real[i]))
    if costs[longest] > batch_tokens:
        padded = f", {costs[longest]} padded to its bucket" if costs[longest] != real[longest] else ""
        raise UserError(f"train.batch_tokens = {batch_tokens}: smaller than the longest training example "
                        f"({where[longest]}: {real[longest]} tokens{padded}); raise train.batch_tokens to at least "
                        f"{costs[longest]}")


def smallest_budget(sizes: Sequence[tuple[int, int]], family: str, packing: bool) -> int:
    """The smallest batch_tokens that holds every example (padding included): a default is raised to it."""
    if packing or not family_spec(family).separate_decoder:
        return max(a for a, _ in sizes) if packing else max(bucket_length(a) for a, _ in sizes)
    return max(bucket_length(a) + bucket_length(b) for a, b in sizes)


def make_layout(sizes: Sequence[tuple[int, int]], family: str, packing: bool, batch_tokens: int, max_examples: int,
                where: Sequence[str], flat: bool = False) -> Layout:
    """sizes: (input tokens, label tokens) per example (decoder-only: label tokens = input tokens)."""
    if packing:
        lengths = [a for a, _ in sizes]
        check_budget(batch_tokens, lengths, lengths, where)
        row = min(round_up(max(lengths)), batch_tokens)
        return Layout("packed", batch_tokens, max_examples, row_length=row, rows=max(1, batch_tokens // row),
                      flat=flat)
    if family_spec(family).separate_decoder:  # encoder inputs and labels pad separately: a pair costs both
        keys = [(bucket_length(a), bucket_length(b)) for a, b in sizes]
        real = [a + b for a, b in sizes]
    else:
        keys = [(bucket_length(a), 0) for a, _ in sizes]
        real = [a for a, _ in sizes]
    check_budget(batch_tokens, [a + b for a, b in keys], real, where)
    merged = merge_buckets(Counter(keys))
    buckets = sorted(set(merged.values()))
    index = {b: i for i, b in enumerate(buckets)}
    assignment = [index[merged[k]] for k in keys]
    rows = [max(1, min(max_examples, batch_tokens // (a + b))) for a, b in buckets]
    return Layout("buckets", batch_tokens, max_examples, buckets=buckets, bucket_rows=rows, assignment=assignment)


def merge_buckets(counts: Counter[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    """Map each (input, label) bucket to one of at most MAX_BUCKETS buckets that contain it, merging first the bucket
    whose examples would gain the least padding (the largest bucket on both sides always exists to merge into)."""
    target = {k: k for k in counts}
    live = Counter(counts)
    live.setdefault((max(a for a, _ in counts), max(b for _, b in counts)), 0)
    while len(live) > MAX_BUCKETS:
        cost, source, dest = min((n * (d[0] + d[1] - s[0] - s[1]), s, d) for s, n in live.items() for d in live
                                 if d != s and d[0] >= s[0] and d[1] >= s[1])
        live[dest] += live.pop(source)
        target = {k: dest if v == source else v for k, v in target.items()}
    return target


def pack_rows(lengths: Sequence[int], order: Sequence[int], row_length: int, max_per_row: int) -> list[list[int]]:
    """Best-fit decreasing over windows of the shuffled order: rows of example indices, each at most row_length
    tokens and max_per_row examples."""
    rows: list[list[int]] = []
    window = 8192
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        free: list[tuple[int, int]] = []  # (free tokens, row id), sorted
        mine: list[list[int]] = []
        used: list[int] = []
        for i in chunk:
            at = bisect.bisect_left(free, (lengths[i], -1))
            if at < len(free):
                room, r = free.pop(at)
            else:
                room, r = row_length, len(mine)
                mine.append([])
                used.append(0)
            mine[r].append(i)
            used[r] += 1
            if room - lengths[i] > 0 and used[r] < max_per_row:
                bisect.insort(free, (room - lengths[i], r))
        rows.extend(mine)
    return rows


def segment(lengths: Sequence[int], row_length: int) -> list[list[int]]:
    """Positions of consecutive examples grouped greedily into rows of row_length (what the collator does; for
    examples laid out row by row it never needs more rows than that layout)."""
    rows: list[list[int]] = [[]]
    room = row_length
    for pos, n in enumerate(lengths):
        if n > room and rows[-1]:
            rows.append([])
            room = row_length
        rows[-1].append(pos)
        room -= n
    return rows


def shape_rows(needed: int, limit: int) -> int:
    """Rows a packed micro-batch is padded to: a power of two, or the full count."""
    return min(limit, 1 << max(0, needed - 1).bit_length()) if limit else 1 << max(0, needed - 1).bit_length()


class TokenBudgetBatches:
    """A batch sampler (lists of dataset indices, one per micro-batch) for Trainer's DataLoader; set_epoch as the
    Trainer and accelerate call it. len() is the same in every epoch."""

    def __init__(self, sizes: Sequence[tuple[int, int]], layout: Layout, seed: int) -> None:
        self.lengths = [a for a, _ in sizes]
        self.layout = layout
        self.seed = seed
        self.epoch = 0
        self._packed: list[list[int]] | None = None
        if layout.kind == "packed":
            self._packed = self._pack()
        self._count = len(self._packed) if self._packed is not None else sum(
            -(-n // layout.bucket_rows[b]) for b, n in Counter(layout.assignment).items())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._count

    def _generator(self, epoch: int) -> Any:
        import torch

        return torch.Generator().manual_seed(self.seed * 100_003 + epoch)

    def _pack(self) -> list[list[int]]:
        import torch

        lay = self.layout
        order = torch.randperm(len(self.lengths), generator=self._generator(-1)).tolist()
        rows = pack_rows(self.lengths, order, lay.row_length, lay.max_examples)
        batches: list[list[int]] = []
        current: list[int] = []
        count = 0
        for row in rows:
            if current and (count == lay.rows or len(current) + len(row) > lay.max_examples):
                batches.append(current)
                current, count = [], 0
            current.extend(row)  # row by row: the collator's greedy rows never need more
            count += 1
        if current:
            batches.append(current)
        return batches

    def batches(self, epoch: int) -> list[list[int]]:
        """The epoch's micro-batches in order."""
        generator = self._generator(epoch)
        if self._packed is not None:
            return [self._packed[i] for i in _perm(len(self._packed), generator)]
        lay = self.layout
        members: dict[int, list[int]] = {}
        for i in _perm(len(self.lengths), generator):
            members.setdefault(lay.assignment[i], []).append(i)
        out: list[list[int]] = []
        for bucket in sorted(members):
            group, n = members[bucket], lay.bucket_rows[bucket]
            out.extend(group[j:j + n] for j in range(0, len(group), n))
        return [out[i] for i in _perm(len(out), generator)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def shapes(self, epoch: int = 0) -> Counter[tuple[int, ...]]:
        """The tensor shape of every micro-batch of an epoch (what the collator will build), counted."""
        lay = self.layout
        found: Counter[tuple[int, ...]] = Counter()
        for batch in self.batches(epoch):
            if lay.kind == "packed":
                rows = shape_rows(len(segment([self.lengths[i] for i in batch], lay.row_length)), lay.rows)
                found[(1, rows * lay.row_length) if lay.flat else (rows, lay.row_length)] += 1
            else:
                a, b = lay.buckets[lay.assignment[batch[0]]]
                found[(len(batch), a, b) if b else (len(batch), a)] += 1
        return found


def _perm(n: int, generator: Any) -> list[int]:
    import torch

    return torch.randperm(n, generator=generator).tolist()


def accumulation_for(batch_size: int, examples: int, micro_batches: int, world: int) -> int:
    """Micro-batches per device per optimizer step so that a step holds about batch_size examples."""
    per_micro = examples / max(1, micro_batches)
    return max(1, round(batch_size / (world * per_micro)))


def mean_examples_per_step(examples: int, micro_batches: int, accumulation: int, world: int) -> float:
    steps = max(1, math.ceil(micro_batches / (accumulation * world)))
    return examples / steps


@dataclass
class Batches:
    """One student's batch plan: sampler, collator, layout, accumulation and the shapes of an epoch."""

    sampler: TokenBudgetBatches
    collator: Any  # herd.train.collate's PackedCollator or BucketCollator
    layout: Layout
    accumulation: int
    micro_examples: int
    shapes: dict[tuple[int, ...], int]
    examples: int
    world: int  # processes sharing each optimizer step

    @property
    def tokens(self) -> int:
        return int(self.layout.batch_tokens)

    def info(self) -> dict[str, Any]:
        steps = max(1, -(-len(self.sampler) // (self.accumulation * self.world)))
        return {**self.layout.describe(), "accumulation": self.accumulation,
                "micro_batches_per_epoch": len(self.sampler), "examples_per_step": round(self.examples / steps, 1),
                "distinct_shapes": len(self.shapes), "shapes": {"x".join(map(str, k)): v for k, v in
                                                                 sorted(self.shapes.items())}}
