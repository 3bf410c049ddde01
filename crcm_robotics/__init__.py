"""crcm-robotics: an action-conditioned causal video world model for robots, distilled for real time."""

__version__ = "0.1.0"
