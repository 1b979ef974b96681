"""`nas`: the search engine and CLI over the `space` design space and the `evaluators`."""

__version__ = "0.1.0"
