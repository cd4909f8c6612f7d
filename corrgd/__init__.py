"""corrgd: decorrelated gradient descent and its biologically plausible cousins."""

__version__ = "0.1.0"
