"""toad: an emulated TCP Offload Engine and the measurements it exists for."""

__version__ = "0.1.0"
