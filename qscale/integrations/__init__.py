"""Integrations with serving engines: plugins that run qscale inside them.

Each module imports its engine lazily, so importing this package costs nothing.
"""
