#!/usr/bin/env python3
"""Write recall.txt: a synthetic corpus that needs long memory.

Every line is one recall task:

    m:FILLER=m

``m`` is a marker letter, ``FILLER`` is noise ('.' or, one time in eight,
'-'), and after the '=' the marker must be repeated.  The copy of the marker
sits exactly k characters after the marker itself (k = len(FILLER) + 3), with
k in DISTANCES.  Each distance has its own four marker letters (MARKERS), so
a network cannot learn to hold a marker on the short lines and reuse that
skill on the long ones: each distance is learnt only from the gradient that
reaches back k steps.  The lines come in blocks of len(DISTANCES): each block
holds every distance once, in shuffled order, so any stretch of the file (the
validation tail included) has the same mix of distances.

A model can only predict the copy if it carries the marker across k time
steps; with truncated BPTT over windows of seq_length characters it only gets
a gradient for that when seq_length >= k.  See README.md beside this file.

Python 3 standard library only.  The seed is fixed, so running

    python3 sample_data/make_recall.py

rewrites sample_data/recall.txt byte for byte.  Pass a path to write elsewhere.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

SEED = 20240601
DISTANCES = (5, 10, 20, 40, 80)
MARKERS = {5: "abcd", 10: "efgh", 20: "ijkl", 40: "mnop", 80: "qrst"}
BLOCKS = 640  # lines = BLOCKS * len(DISTANCES)
FILLER = "."
DISTRACTOR = "-"
DISTRACTOR_ONE_IN = 8


def make_line(rng: random.Random, k: int) -> str:
    """One task whose marker is copied k characters after it, with its newline."""
    letters = MARKERS[k]
    marker = letters[rng.randrange(len(letters))]
    filler = "".join(DISTRACTOR if rng.randrange(DISTRACTOR_ONE_IN) == 0 else FILLER for _ in range(k - 3))
    return f"{marker}:{filler}={marker}\n"


def make_text(seed: int = SEED) -> str:
    rng = random.Random(seed)
    lines = []
    for _ in range(BLOCKS):
        block = list(DISTANCES)
        rng.shuffle(block)
        lines.extend(make_line(rng, k) for k in block)
    return "".join(lines)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "recall.txt"
    data = make_text().encode("ascii")
    out.write_bytes(data)
    lines = data.count(b"\n")
    print(f"wrote {out}: {len(data)} bytes, {lines} lines, {len(set(data))} distinct characters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
