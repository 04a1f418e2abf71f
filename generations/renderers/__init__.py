"""Renderers that plug into generations.rendering (contract §10); `turntable` is the default."""
