"""duo: a real-time, full-duplex voice-assistant server built on DUO duplex decoding."""

__version__ = "0.1.0"
