"""Teachers: one `Teacher` protocol (base.py), backends (openai_backend, local, fake, llamacpp), the SQLite call
journal, prices, and the `Engine` that puts them together for the stages."""

from herd.teacher.base import Request, Result, Teacher
from herd.teacher.engine import Engine, Usage, open_engine

__all__ = ["Engine", "Request", "Result", "Teacher", "Usage", "open_engine"]
