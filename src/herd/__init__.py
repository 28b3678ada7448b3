"""herd: distil one teacher LLM into a herd of small instruction-following models (the LaMini method)."""

__version__ = "0.1.0"
