"""The long-memory task of ``sample_data/recall.txt``: is the corpus in its format, and what has the model learnt?

Every line of such a corpus is one recall task, ``m:FILLER=m``: a marker ``m``, a colon, filler
(``.`` and ``-``), ``=``, and the marker again. The copy sits ``k = len(FILLER) + 3`` characters
after the marker, so predicting it needs a memory of k steps (sample_data/README.md). The overall
loss per character hardly shows whether that memory was learnt — the filler makes up most of the
text — but the loss on the copies, per distance k, does: ln(number of markers) for a copy that is
not recalled (ln 4 ≈ 1.39 nats in recall.txt), near 0 for one that is.

:func:`is_recall_text` tells the format from the text; :class:`RecallProbe` measures, on held-out
lines, the copy loss and accuracy per distance (:class:`RecallFigures`). Numerics only: no UI.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

from .corpus import Corpus, Vocab
from .model import CharRNN

#: Characters with a role in a line; a marker is any other character (newline excluded).
SEPARATOR, EQUALS, FILLERS = ":", "=", ".-"
#: One task per line: a marker, ':', filler, '=', the same marker.
LINE = re.compile(r"^([^\n:=.\-]):([.\-]*)=\1$", re.MULTILINE)
#: The share of a text's lines that must be tasks ("nearly every line") …
MIN_SHARE = 0.95
#: … and at least this many of them: a few lines of this shape in another text are not the format.
MIN_LINES = 20
#: How much of the training text the format is checked on (its beginning), besides the held-out lines.
DETECT_CHARS = 20_000
#: Characters each stream reads before its first scored line, so that line starts from a carried state
#: (16 were enough on recall.txt; see :class:`RecallProbe`).
WARMUP_CHARS = 32
#: Consecutive held-out lines per stream: fewer streams would mean more steps in sequence (slower),
#: more streams more warm-up characters (more work).
LINES_PER_STREAM = 8
#: Steps between two measurements, at least: the probe runs at the first validation this many steps after the
#: last one (about 1.5 % of the training time at 128/25/32; see README "The long-memory task").
EVERY = 300
#: Measurements kept for the history of each distance.
HISTORY = 240
#: The held-out text is read this many steps at a time (the state carried over): a pass's work arrays stay small.
CHUNK = 128


def distance(filler: str) -> int:
    """The distance k from a marker to its copy, for a line with this filler: the copy is k characters later."""
    return len(filler) + 3


def window_share(k: int, seq_length: int) -> float:
    """The share of copies at distance k that truncated BPTT can learn from: those whose marker (the input
    k − 1 steps before the ``=``) falls in the same window of ``seq_length`` characters as the ``=``, for
    windows that start anywhere in a line: (T − k + 1)/T, 0 beyond the window (k > T)."""
    return max(0.0, (seq_length - k + 1) / seq_length)


def _lines(text: str) -> list[str]:
    """The lines of ``text`` (a final newline does not make an empty last line)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def recall_share(text: str, *, whole: bool = True) -> tuple[int, int]:
    """``(tasks, lines)``: how many of the text's lines are recall tasks, of how many. With ``whole=False``
    the text is a piece cut from a longer one: its first and last lines may be partial and are not counted."""
    lines = _lines(text)
    if not whole:
        lines = lines[1:-1]
    tasks = sum(1 for line in lines if LINE.fullmatch(line))
    return tasks, len(lines)


def is_recall_text(text: str, *, whole: bool = True) -> bool:
    """Whether ``text`` is in recall.txt's format: at least :data:`MIN_SHARE` of its lines, and
    :data:`MIN_LINES` lines or more, are ``m:FILLER=m`` tasks (see :func:`recall_share` for ``whole``)."""
    tasks, lines = recall_share(text, whole=whole)
    return tasks >= MIN_LINES and tasks >= MIN_SHARE * lines


def markers_by_distance(text: str) -> dict[int, set[str]]:
    """The marker characters of the text's tasks, by distance k."""
    found: dict[int, set[str]] = {}
    for m in LINE.finditer(text):
        found.setdefault(distance(m.group(2)), set()).add(m.group(1))
    return found


def _decode(vocab: Vocab, ids: np.ndarray) -> str:
    return "".join(np.array(list(vocab.chars))[np.asarray(ids, dtype=np.intp)]) if len(ids) else ""


@dataclass(frozen=True)
class RecallRow:
    """The copies at one distance k, on the held-out lines."""

    k: int
    copies: int  # how many lines with this distance were scored
    markers: int  # distinct markers at this distance (in these lines and where the format was checked)
    loss: float  # mean −log p(copy) at the step whose input is '=', in nats
    accuracy: float  # share of those steps whose most likely next character is the copy

    @property
    def chance_loss(self) -> float:
        """The loss of a copy that is not recalled: ln(markers), one of the distance's markers at random
        (a model that can count the line's length knows the distance, not the marker)."""
        return math.log(self.markers) if self.markers > 1 else 0.0

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.markers if self.markers else 0.0


@dataclass(frozen=True)
class RecallFigures:
    """One measurement of :class:`RecallProbe`: one row per distance, in increasing k."""

    step: int
    seq_length: int
    held_out: bool  # the lines were held out (the validation part); False: the end of the training text
    rows: tuple[RecallRow, ...]
    #: earlier measurements, oldest first, this one last: (step, the loss of each row, in the rows' order)
    history: tuple[tuple[int, tuple[float, ...]], ...] = ()

    def row(self, k: int) -> RecallRow | None:
        return next((r for r in self.rows if r.k == k), None)

    def to_dict(self) -> dict:
        """For a JSON line (``--metrics``): the figures of this measurement, without its history."""
        return {"step": self.step, "seq_length": self.seq_length, "held_out": self.held_out,
                "distances": [{"k": r.k, "copies": r.copies, "markers": r.markers, "loss": round(r.loss, 5),
                               "accuracy": round(r.accuracy, 5), "window_share": round(window_share(r.k,
                               self.seq_length), 4)} for r in self.rows]}


class RecallProbe:
    """Copy loss and accuracy per distance k of a :class:`CharRNN` (any cell, any layers) on held-out recall lines.

    **Which state a line starts from.** The hidden state is carried through the held-out text, the
    way training carries it from window to window and validation through the validation text: each
    line starts from the state the lines before it left. A fresh zero state per line would start
    every line from a state the trained model meets only at the start of an epoch, so the figure
    would measure the model somewhere it is not used. To run many lines at once the held-out lines
    are cut into streams of :data:`LINES_PER_STREAM` consecutive lines, one per column of the batch;
    each stream starts from zero :data:`WARMUP_CHARS` characters before its first line (the text
    really before it, not scored), so that its first line, too, starts from a carried state. The
    markers are drawn independently per line, so nothing earlier tells a line's marker: only the
    memory of its own marker does. Measured on a model trained for 6,000 steps on recall.txt: with
    16 or 64 characters of warm-up the 40 streams give the figures of one stream through the whole
    held-out text to 0.001 nats at every k; with none, each stream's first line starts from zero and
    k = 5 reads 0.19 nats instead of 0.016.

    **What is scored.** For a line at distance k the copy is the target at the step whose input is
    the ``=``; its loss is −log ŷ[copy] there, its accuracy whether argmax ŷ is the copy. Lines
    that are not tasks are read (as context) but not scored.

    **Cost.** One forward pass over the held-out lines (their characters plus the warm-ups), the
    recurrence only (the model's own, :meth:`CharRNN.hidden`, without dropout, :data:`CHUNK` steps at a
    time): the output layer runs for the scored steps alone, one per line. On recall.txt's validation
    part (10,560 characters) that is about as much work as a validation pass.
    """

    def __init__(self, vocab: Vocab, data: np.ndarray, *, context: np.ndarray | None = None, seq_length: int,
                 held_out: bool = True, lines_per_stream: int = LINES_PER_STREAM, warmup: int = WARMUP_CHARS,
                 known_markers: dict[int, set[str]] | None = None):
        """``data``: the encoded lines to score (a piece of the corpus; partial lines at its ends are not
        scored); ``context``: the encoded text just before it (its last ``warmup`` characters are read
        first by the first stream); ``known_markers``: markers by distance seen elsewhere in the corpus
        (a few held-out lines may not show every marker of a distance: the chance loss counts them all)."""
        self.vocab = vocab
        self.seq_length = int(seq_length)
        self.held_out = held_out
        context = np.asarray(context if context is not None and warmup > 0 else data[:0])[-warmup:]
        index = vocab.index()
        offset = len(context)
        starts, ks, markers = [], [], []
        for m in LINE.finditer(_decode(vocab, data)):
            if m.start() == 0 and offset and context[-1] != index.get("\n", -1):
                continue  # the piece begins inside a line: this match is only the end of it
            starts.append(offset + m.start())
            ks.append(distance(m.group(2)))
            markers.append(index[m.group(1)])
        chars = np.array(list(vocab.chars))
        self.marker_sets = {k: set(v) for k, v in (known_markers or {}).items()}
        for k, m in zip(ks, markers, strict=True):
            self.marker_sets.setdefault(k, set()).add(str(chars[m]))
        self.seq = np.concatenate([context, data]).astype(np.intp)  # the text read, context first
        self.starts = np.array(starts, dtype=np.intp)  # where each scored line begins in ``seq``
        self.k = np.array(ks, dtype=np.intp)
        self.markers = np.array(markers, dtype=np.intp)
        self.distances = tuple(int(k) for k in np.unique(self.k))
        self._plan(max(1, int(lines_per_stream)), int(warmup))
        self.latest: RecallFigures | None = None
        self._history: deque[tuple[int, tuple[float, ...]]] = deque(maxlen=HISTORY)

    @classmethod
    def for_corpus(cls, corpus: Corpus, seq_length: int, val_chars: int) -> RecallProbe | None:
        """A probe on ``corpus`` when it is in recall.txt's format (else None).

        The held-out lines are the validation text the trainer uses (``corpus.val[:val_chars + 1]``);
        without one, the last ``val_chars`` characters of the training text (then ``held_out`` is False).
        The format is checked on those lines and on the first :data:`DETECT_CHARS` characters of the
        training text: both must be recall text.
        """
        vocab = corpus.vocab
        if not all(c in vocab.chars for c in ("\n", SEPARATOR, EQUALS)):
            return None  # cheap refusal: no decoding of a large corpus that cannot be in the format
        if len(corpus.val) >= 2:
            data, context, held_out = corpus.val[: val_chars + 1], corpus.train, True
        else:
            cut = max(0, len(corpus.train) - val_chars)
            data, context, held_out = corpus.train[cut:], corpus.train[:cut], False
        head = _decode(vocab, corpus.train[:DETECT_CHARS])
        if not is_recall_text(head, whole=False):
            return None
        probe = cls(vocab, data, context=context, seq_length=seq_length, held_out=held_out,
                    known_markers=markers_by_distance(head))
        n_lines = len(_lines(_decode(vocab, data)))
        if len(probe.starts) < MIN_LINES or len(probe.starts) < MIN_SHARE * max(0, n_lines - 2):
            return None
        return probe

    # -- the batch -------------------------------------------------------------------
    def _plan(self, lines_per_stream: int, warmup: int) -> None:
        """Cut the scored lines into streams of consecutive lines: inputs (L, S), time-major, and where
        each line's '=' step is read, ``(t, stream)``."""
        n = len(self.starts)
        S = max(1, math.ceil(n / lines_per_stream))
        # cut where the characters (not the lines) divide evenly: the streams end about together
        first, last = (int(self.starts[0]), int(self.starts[-1] + self.k[-1])) if n else (0, 1)
        which = np.minimum((self.starts - first) * S // max(1, last - first), S - 1)
        groups = [g for g in np.split(np.arange(n), np.flatnonzero(np.diff(which)) + 1) if len(g)] if n else []
        begins, ends = [], []
        for g in groups:
            begins.append(max(0, int(self.starts[g[0]]) - warmup))
            ends.append(int(self.starts[g[-1]] + self.k[g[-1]]))  # up to and with the last '=' (exclusive end)
        L = max((e - b for b, e in zip(begins, ends, strict=True)), default=0)
        self.inputs = np.zeros((L, len(groups)), dtype=np.intp)  # padding after a stream's end is never scored
        self.eq_t = np.empty(n, dtype=np.intp)
        self.eq_s = np.empty(n, dtype=np.intp)
        for s, (g, b, e) in enumerate(zip(groups, begins, ends, strict=True)):
            self.inputs[: e - b, s] = self.seq[b:e]
            self.eq_t[g] = self.starts[g] + self.k[g] - 1 - b  # the '=' is k − 1 characters after the marker
            self.eq_s[g] = s

    @property
    def streams(self) -> int:
        return self.inputs.shape[1]

    # -- the measurement ---------------------------------------------------------------
    def due(self, step: int, every: int = EVERY) -> bool:
        """Whether a validation at ``step`` should measure: none yet, ``every`` steps since the last, or the
        step went back (a restored checkpoint)."""
        last = self.latest.step if self.latest is not None else None
        return last is None or step - last >= every or step < last

    def copy_scores(self, model: CharRNN) -> tuple[np.ndarray, np.ndarray]:
        """Per scored line: −log ŷ[copy] at its '=' step (nats) and whether argmax ŷ is the copy."""
        p = model.params
        n = len(self.starts)
        if n == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        L, S = self.inputs.shape
        m = model.astype(model.dtype)  # its own work arrays: the model's are kept for training's shapes
        h_eq = np.empty((n, model.H))  # the top layer's state after reading each '='
        state = None
        for t0 in range(0, L, CHUNK):
            hs, state = m.hidden(self.inputs[t0:t0 + CHUNK].T, state)  # (steps, S, H), h_t of every stream
            at = (self.eq_t >= t0) & (self.eq_t < t0 + CHUNK)
            h_eq[at] = hs[self.eq_t[at] - t0, self.eq_s[at]]
        q = h_eq @ p["v"].T.astype(np.float64) + p["by"][:, 0].astype(np.float64)  # (n, V) logits
        q -= q.max(axis=1, keepdims=True)
        rows = np.arange(n)
        nll = np.log(np.exp(q).sum(axis=1)) - q[rows, self.markers]
        correct = q.argmax(axis=1) == self.markers
        return nll, correct

    def measure(self, model: CharRNN, step: int) -> RecallFigures:
        """Score ``model`` on the held-out lines; the figures become :attr:`latest` (with the history)."""
        nll, correct = self.copy_scores(model)
        rows = []
        for k in self.distances:
            at = self.k == k
            rows.append(RecallRow(k=k, copies=int(at.sum()), markers=len(self.marker_sets[k]),
                                  loss=float(nll[at].mean()), accuracy=float(correct[at].mean())))
        losses = tuple(r.loss for r in rows)
        if self._history and self._history[-1][0] >= step:  # measured again at the same step (or after a restore)
            while self._history and self._history[-1][0] >= step:
                self._history.pop()
        self._history.append((int(step), losses))
        self.latest = RecallFigures(step=int(step), seq_length=self.seq_length, held_out=self.held_out,
                                    rows=tuple(rows), history=tuple(self._history))
        return self.latest
