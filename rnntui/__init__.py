"""rnntui: a character-level RNN trained with hand-written NumPy BPTT, and a terminal app to watch its gradients.

The numerical core is usable as a library and imports no UI code::

    from rnntui import Corpus, TrainConfig, Trainer
    trainer = Trainer(Corpus.load("sample_data/persuasion.txt"), TrainConfig(hidden_size=64))
    for _ in range(100):
        trainer.train_step()
    print(trainer.loss, trainer.grad_stats.total.norm_pre, trainer.sample().text)
"""

__version__ = "0.1.0"

from .checkpoint import Checkpoint, CheckpointError  # noqa: E402
from .checkpoint import load as load_checkpoint
from .checkpoint import save as save_checkpoint
from .config import ConfigError, HyperParams, TrainConfig  # noqa: E402
from .corpus import BatchStream, Corpus, CorpusError, Vocab, read_text  # noqa: E402
from .model import CharRNN  # noqa: E402
from .monitor import GradStats, Monitor, ParamStats  # noqa: E402
from .optim import clip_grads, make_optimizer  # noqa: E402
from .trainer import Pause, Resume, SampleNow, SaveCheckpoint, Set, Snapshot, Stop, Trainer, resume_trainer  # noqa: E402

__all__ = [
    "BatchStream", "CharRNN", "Checkpoint", "CheckpointError", "ConfigError", "Corpus", "CorpusError",
    "GradStats", "HyperParams", "Monitor", "ParamStats", "Pause", "Resume", "SampleNow", "SaveCheckpoint", "Set",
    "Snapshot", "Stop", "TrainConfig", "Trainer", "Vocab", "clip_grads", "load_checkpoint", "make_optimizer",
    "read_text", "resume_trainer", "save_checkpoint",
]
