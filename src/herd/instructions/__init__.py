"""herd instructions: the teacher writes new instructions from seed examples, with or without topics (LaMini §1).

Modules, in the order the stage uses them: `seeds` (seed pools and field mapping), `topics` (topic lists and
teacher-proposed topics), `render` (prompt templates and the deterministic call plan), `parse` (the teacher's
`<example>` blocks and reject reasons) and `stage` (`run`, which writes instructions/data.jsonl, rejects.jsonl and
manifest.json).
"""

from herd.instructions.stage import run

__all__ = ["run"]
