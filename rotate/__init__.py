"""rotate: the API platform — API keys, bearer auth, error envelope, throttles, base API view."""
