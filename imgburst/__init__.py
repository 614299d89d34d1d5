"""imgburst: an event-driven image-processing burst service."""

__version__ = "0.1.0"
