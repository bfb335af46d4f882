"""edgecl: an on-device continual learner that asks a cloud LLM for help within a budget."""

__version__ = "0.1.0"
