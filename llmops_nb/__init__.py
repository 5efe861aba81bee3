"""llmops-nb: a notebook-first workbench for the whole life of an enterprise LLM application."""
__version__ = "0.1.0"

from . import core as _core  # noqa: F401  (importing the package sets the offline defaults of core)
