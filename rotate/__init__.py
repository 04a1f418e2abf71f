"""rotate: the API platform — API keys, bearer auth, error envelope, throttles, base API view."""

# The one place the distribution's version is written (pyproject.toml reads it).
__version__ = "0.1.0"
