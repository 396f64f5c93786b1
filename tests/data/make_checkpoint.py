"""How the checkpoints in this folder were made: with the rnntui of an earlier commit, to check that this one
still reads and resumes them (tests/test_checkpoint.py).

    git worktree add --detach /tmp/old COMMIT
    PYTHONPATH=/tmp/old python tests/data/make_checkpoint.py tests/data/checkpoint-COMMIT.npz

checkpoint-2cb3733.npz: the format as the trainer wrote it field by field; checkpoint-0329c4a.npz: from
before run ids and the saved change log. Both: hidden size 8, 13 Adam steps with a change of settings
after step 7 and a refused one at step 13, samples every 5 steps, validation every 4.
"""

import sys

from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.checkpoint import save

#: The corpus (tests/test_checkpoint.py uses the same text to go on from the files).
TEXT = "The cat sat on the mat. A dog ran to the river, and the bird saw her.\n" * 12
CONFIG = TrainConfig(hidden_size=8, batch_size=2, seq_length=6, dtype="float64", seed=3,
                     hyper=HyperParams(optimizer="adam", lr=0.01, sample_every=5, sample_length=12, val_every=4))
FIRST_STEPS, THEN_STEPS = 7, 6
CHANGED = {"lr": 0.02, "clip_mode": "global", "clip": 1.0}


def main(out: str) -> None:
    tr = Trainer(Corpus.from_text(TEXT, val_fraction=0.1), CONFIG)
    for _ in range(FIRST_STEPS):
        assert tr.train_step() is not None
    tr.set_hyper(**CHANGED)
    for _ in range(THEN_STEPS):
        assert tr.train_step() is not None
    tr.set_hyper(lr=-1.0)  # refused: in the change log too
    save(out, tr)


if __name__ == "__main__":
    main(sys.argv[1])
