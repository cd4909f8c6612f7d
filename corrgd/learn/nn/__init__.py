"""Layers with learned decorrelation, and the network that holds them."""

from corrgd.learn.nn.decorrelation import (
    Decorrelation,
    DecorSettings,
    correlation_floor,
    off_diagonal_correlation,
)
from corrgd.learn.nn.layers import DecorConv2d, DecorLayer, DecorLinear
from corrgd.learn.nn.network import Block, Net, Trace

__all__ = ["Block", "DecorConv2d", "DecorLayer", "DecorLinear", "DecorSettings", "Decorrelation",
           "Net", "Trace", "correlation_floor", "off_diagonal_correlation"]
