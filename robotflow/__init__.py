"""robotflow: a single-process, real-time robotics runtime for data collection, training and deployment."""

__version__ = "0.1.0"
