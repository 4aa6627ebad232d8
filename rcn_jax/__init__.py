"""rcn-jax: recurrent convolutional networks for composite-database micro-expression recognition."""

__version__ = "0.1.0"
