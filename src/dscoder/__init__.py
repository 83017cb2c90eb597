"""dscoder: the DeepSeek-Coder recipe end to end, as readable software."""

__version__ = "0.1.0"
