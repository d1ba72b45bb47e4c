"""The edge status TUI (``edgecore tui``, ``kubeedge-tui``): a Textual app reading edgecore's status socket.

Runs in its own process on asyncio; imports only :mod:`kubeedge.kit` (the status schema, limits, config
defaults), never edge or trio code (an import-linter contract keeps it so).
"""
