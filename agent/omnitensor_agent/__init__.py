"""OmniTensor node agent: samples GPU telemetry and reports it to the contributor portal."""

__version__ = "0.1.0"
