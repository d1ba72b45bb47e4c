"""Shared toolkit: config models, logging, TLS, backoff, limits and the module runtime.

``kit`` may use trio but never imports ``cloud``, ``edge``, ``apiserver``, ``cli`` or ``tui``.
"""
