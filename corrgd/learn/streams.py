"""Named random streams: every random quantity of a run draws from its own generator.

A run has one integer seed. Each kind of randomness gets a generator seeded by a
hash of (seed, stream name, counters), so streams never share numbers: the
feedback matrices of feedback alignment are not the forward weights shifted by a
row, the noise of node perturbation is not the data order, and each stream can
be reproduced on its own (e.g. the order of epoch 7 without replaying epochs 1-6).

    init         forward weights and biases
    feedback     fixed random feedback matrices (FA, DFA, COPI with FA signals)
    split        the validation hold-out
    order        the order of training samples, per epoch
    noise        node-perturbation noise, per epoch
    crop         random crops, per epoch
    diagnostics  anything the per-epoch diagnostics draw, per epoch
"""

from __future__ import annotations

import hashlib

import torch

STREAMS = ("init", "feedback", "split", "order", "noise", "crop", "diagnostics")


def stream_seed(seed: int, stream: str, *counters: int) -> int:
    """A 63-bit seed for `stream` of a run seeded `seed` (and e.g. an epoch counter)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    key = ":".join(str(int(v)) for v in (seed, *counters))
    digest = hashlib.blake2b(f"corrgd/{stream}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, stream: str, *counters: int,
              device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for `stream`, on `device` (noise is drawn where it is used)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *counters))
