"""Collators for herd's token-budget micro-batches: packed rows (decoder-only) and length buckets (both families).

Each batch also carries two plain Python ints counted on the host, `herd_tokens` (real input tokens) and
`herd_label_tokens` (label tokens the loss is taken over), so the Trainer never has to ask the device what is in a
batch. Reads token ids; writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from herd.students import IGNORE, family_spec
from herd.train.batching import bucket_length, segment, shape_rows
from herd.train.kd import kd_batch

HOST_COUNTS = ("herd_tokens", "herd_label_tokens")


def label_tokens(labels: Sequence[int], shift: bool) -> int:
    """Labels the loss sees: decoder-only losses predict token t+1 from t, so the first label never counts."""
    return sum(1 for t in (labels[1:] if shift else labels) if t != IGNORE)


def _count(feature: dict[str, Any], shift: bool) -> int:
    found = feature.get("loss_tokens")
    return int(found) if found is not None else label_tokens(feature["labels"], shift)


class PackedCollator:
    """Decoder-only examples laid into rows of `row_length`: position ids restart at 0 for every example, the first
    label of each example is ignored (nothing before it in its own sequence), no attention mask, so transformers
    builds a block-diagonal mask from the position ids (SDPA/eager) or runs flash-attention's varlen kernel; the
    tail of a row is a separate pseudo-sequence of padding with ignored labels. Rows are padded to a power of two
    (at most `max_rows`), which bounds the shapes. `flat`: the rows as one long row plus cu_seq_lens (varlen)."""

    def __init__(self, pad_id: int, row_length: int, max_rows: int, flat: bool = False) -> None:
        self.pad_id, self.row_length, self.max_rows, self.flat = pad_id, row_length, max_rows, flat

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = self.row_length
        lengths = [len(f["input_ids"]) for f in features]
        width = max(width, max(lengths))  # an evaluation example longer than the training rows
        rows = segment(lengths, width)
        count = max(len(rows), shape_rows(len(rows), self.max_rows))
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        spans: list[int] = []
        starts: list[tuple[int, int]] = []  # (example, flat offset): where distillation targets go (herd.train.kd)
        for r in range(count):
            used = 0
            for pos in rows[r] if r < len(rows) else []:
                feature = features[pos]
                n = lengths[pos]
                starts.append((pos, len(ids)))
                ids.extend(feature["input_ids"])
                labels.append(IGNORE)
                labels.extend(feature["labels"][1:])
                positions.extend(range(n))
                spans.append(n)
                used += n
            if used < width:
                ids.extend([self.pad_id] * (width - used))
                labels.extend([IGNORE] * (width - used))
                positions.extend(range(width - used))
                spans.append(width - used)
        shape = (1, count * width) if self.flat else (count, width)
        batch: dict[str, Any] = {
            "input_ids": torch.tensor(ids).view(shape), "labels": torch.tensor(labels).view(shape),
            "position_ids": torch.tensor(positions).view(shape),
            "herd_tokens": sum(lengths), "herd_label_tokens": sum(_count(f, True) for f in features)}
        if self.flat:
            bounds = [0]
            for n in spans:
                bounds.append(bounds[-1] + n)
            cu = torch.tensor(bounds, dtype=torch.int32)
            batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(spans), max_length_k=max(spans))
        batch.update(kd_batch(features, starts, shape))
        return batch


class BucketCollator:
    """Rows padded to their bucket's lengths (multiples of 16): `input_ids` / `attention_mask` to the input length,
    `labels` (-100) to the label length; encoder-decoders also get `decoder_input_ids` (labels shifted right after
    the decoder start token, made here on the host). Training features carry their bucket id; evaluation batches
    without one pad to the next candidate bucket length."""

    def __init__(self, family: str, pad_id: int, start_id: int | None, buckets: Sequence[tuple[int, int]]) -> None:
        self.family, self.pad_id, self.start_id, self.buckets = family, pad_id, start_id, list(buckets)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        seq2seq = family_spec(self.family).separate_decoder
        if "bucket" in features[0]:
            width, label_width = self.buckets[max(int(f["bucket"]) for f in features)]
        else:
            width = bucket_length(max(len(f["input_ids"]) for f in features))
            label_width = bucket_length(max(len(f["labels"]) for f in features))
        label_width = label_width if seq2seq else width
        ids, mask, labels, decoder = [], [], [], []
        for f in features:
            n, m = len(f["input_ids"]), len(f["labels"])
            ids.append(list(f["input_ids"]) + [self.pad_id] * (width - n))
            mask.append([1] * n + [0] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE] * (label_width - m))
            if seq2seq:
                shifted = [self.start_id] + [self.pad_id if t == IGNORE else t for t in f["labels"][:-1]]
                decoder.append(shifted + [self.pad_id] * (label_width - m))
        batch: dict[str, Any] = {
            "input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels),
            "herd_tokens": sum(len(f["input_ids"]) + (len(f["labels"]) if seq2seq else 0) for f in features),
            "herd_label_tokens": sum(_count(f, not seq2seq) for f in features)}
        if seq2seq:
            batch["decoder_input_ids"] = torch.tensor(decoder)
        batch.update(kd_batch(features, [(i, i * label_width) for i in range(len(features))],
                              (len(features), label_width)))
        return batch
