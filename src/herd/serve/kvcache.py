"""A key/value cache layer for the step loop (decode.py) that grows in place and whose rows are slots.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, copying the whole cache every
step; with 24 rows of a few hundred tokens that copy was 16% of a step on CPU. This layer keeps them in a buffer with
spare columns and spare rows: a step writes one column, a row that joins is written into a free slot (`place`), a
finished row is overwritten by the last one (`move`), and only `put` (a new width, or the first rows) copies the
whole cache. Every row ends in the last used column (left padding, masked by the caller).
"""

from __future__ import annotations

from typing import Any

_LAYER_CLASS: Any = None


def growing_layer() -> Any:
    """A cache layer whose keys and values live in a buffer with room to grow (see the module docstring)."""
    global _LAYER_CLASS
    if _LAYER_CLASS is None:
        from transformers.cache_utils import DynamicLayer

        class GrowingLayer(DynamicLayer):  # type: ignore[misc, valid-type]
            used = 0  # columns in use
            rows = 0  # rows in use
            buffers: Any = None

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
                if self.buffers is None:
                    self.is_initialized = True
                    self.device = key_states.device
                    self.put([(key_states, value_states)], key_states.shape[-2])
                    return self.keys, self.values
                end = self.used + key_states.shape[-2]
                if end > self.buffers[0].shape[-2]:
                    self.put([(self.keys, self.values)], self.used, room=end - self.used,
                             spare_rows=self.buffers[0].shape[0] - self.rows)
                    end = self.used + key_states.shape[-2]
                self.buffers[0][: self.rows, :, self.used:end] = key_states
                self.buffers[1][: self.rows, :, self.used:end] = value_states
                self.used = end
                self._views()
                return self.keys, self.values

            def put(self, parts: list[tuple[Any, Any]], width: int, room: int = 0, spare_rows: int = 0) -> None:
                """Hold the rows of every (keys, values) part, stacked, each part's last `width` columns
                right-aligned (a narrower part is left-padded with zeros), with spare columns for the steps to
                come and `spare_rows` free slots. Zeros, not garbage: a masked column's weight is 0, and 0 x NaN
                would still be NaN."""
                import torch

                first_k, first_v = parts[0]
                rows = sum(k.shape[0] for k, _ in parts)
                spare = max(64, width // 2, room)
                shape = (rows + spare_rows, first_k.shape[1], width + spare, first_k.shape[3])
                keys = torch.empty(shape, dtype=first_k.dtype, device=first_k.device)
                values = torch.empty((*shape[:3], first_v.shape[3]), dtype=first_v.dtype, device=first_v.device)
                at = 0
                for k, v in parts:
                    n, w = k.shape[0], min(width, k.shape[-2])
                    keys[at:at + n, :, :width - w].zero_()
                    values[at:at + n, :, :width - w].zero_()
                    keys[at:at + n, :, width - w:width] = k[:, :, k.shape[-2] - w:]
                    values[at:at + n, :, width - w:width] = v[:, :, v.shape[-2] - w:]
                    at += n
                self.buffers, self.used, self.rows = (keys, values), width, rows
                self._views()

            def free_slots(self) -> int:
                return int(self.buffers[0].shape[0]) - self.rows

            def place(self, slot: int, keys: Any, values: Any, width: int) -> None:
                """Write one row's last `width` columns ([heads, columns, dim]) into `slot`, right-aligned; slot
                == rows takes a free slot. The caller checks width <= used and that a slot is free."""
                for buffer, new in zip(self.buffers, (keys, values), strict=True):
                    buffer[slot, :, : self.used - width].zero_()
                    buffer[slot, :, self.used - width: self.used] = new[:, new.shape[-2] - width:]
                self.rows = max(self.rows, slot + 1)
                self._views()

            def move(self, source: int, target: int) -> None:
                """Copy row `source` over row `target` (to fill the hole a finished row left)."""
                for buffer in self.buffers:
                    buffer[target, :, : self.used] = buffer[source, :, : self.used]

            def keep_rows(self, rows: int) -> None:
                self.rows = rows
                self._views()

            def _views(self) -> None:
                self.keys = self.buffers[0][: self.rows, :, : self.used]
                self.values = self.buffers[1][: self.rows, :, : self.used]

        _LAYER_CLASS = GrowingLayer
    return _LAYER_CLASS()
