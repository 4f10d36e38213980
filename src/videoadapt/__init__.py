"""videoadapt: adapt image-language foundation models to video-text tasks with any transfer paradigm."""

from videoadapt.errors import VideoadaptError

__version__ = "0.1.0"
__all__ = ["VideoadaptError", "__version__"]
