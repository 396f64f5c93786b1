"""Reading a text corpus, its vocabulary, and batch streams for truncated BPTT.

The vocabulary is the sorted set of characters in the text. Text is encoded to
the smallest unsigned integer dtype that holds the vocabulary. Training data is
cut into ``B`` contiguous streams; batch ``k`` holds characters ``k·T … k·T+T``
of every stream, so the hidden state carried from one batch to the next belongs
to the text that really precedes it.
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Above this many distinct characters the output layer dominates each step.
LARGE_VOCAB = 1000
#: The largest corpus file read (bytes); a bigger one is refused before it fills the memory.
MAX_CORPUS_BYTES = 1 << 30
_CHUNK = 1 << 23  # characters encoded at a time, to bound peak memory
_PIECE = 1 << 20  # bytes of a file decoded and encoded at a time by Corpus.load (temporaries: ~8 bytes each)


class CorpusError(ValueError):
    """The corpus cannot be used; the message says why and what to do."""


def _smallest_uint(n: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    raise CorpusError(f"vocabulary of {n} characters is too large")


@dataclass(frozen=True)
class Vocab:
    """The sorted characters of a corpus; index ``i`` is character ``chars[i]``."""

    chars: str

    def __post_init__(self):
        if not self.chars:
            raise CorpusError("the vocabulary is empty")
        if list(self.chars) != sorted(set(self.chars)):
            raise CorpusError("vocabulary characters must be distinct and sorted")

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(map(chr, np.flatnonzero(codepoint_counts(text)))))

    @property
    def size(self) -> int:
        return len(self.chars)

    @property
    def dtype(self) -> np.dtype:
        return _smallest_uint(self.size)

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def missing(self, text: str) -> str:
        """Characters of ``text`` that are not in this vocabulary, sorted."""
        present = np.flatnonzero(codepoint_counts(text))
        return "".join(chr(c) for c in np.setdiff1d(present, self.codepoints()))

    def codepoints(self) -> np.ndarray:
        return np.array([ord(c) for c in self.chars], dtype=np.int64)

    def encode(self, text: str) -> np.ndarray:
        """Text → int array of ``self.dtype``. Raises CorpusError on an unknown character."""
        cps = self.codepoints()
        table = np.zeros(int(cps.max()) + 1, dtype=self.dtype)
        table[cps] = np.arange(self.size, dtype=self.dtype)
        known = np.zeros(len(table), dtype=bool)
        known[cps] = True
        out = np.empty(len(text), dtype=self.dtype)
        for start, part in _codepoint_chunks(text):
            if part.max() >= len(table) or not known[part].all():
                missing = self.missing(text[start:start + len(part)])
                raise CorpusError(f"text has characters outside the vocabulary: {printable(missing[:20])}")
            out[start:start + len(part)] = table[part]
        return out

    def decode(self, ids) -> str:
        chars = self.chars
        return "".join(chars[int(i)] for i in np.asarray(ids).ravel())


def _codepoint_chunks(text: str):
    """Yield ``(start, code points)`` for successive chunks of ``text`` (bounded memory)."""
    if text.isascii():
        raw = text.encode("ascii")
        for start in range(0, len(raw), _CHUNK):
            yield start, np.frombuffer(raw, dtype=np.uint8, count=min(_CHUNK, len(raw) - start), offset=start)
        return
    for start in range(0, len(text), _CHUNK):
        yield start, np.frombuffer(text[start:start + _CHUNK].encode("utf-32-le"), dtype=np.uint32)


def codepoint_counts(text: str) -> np.ndarray:
    """How often each code point occurs in ``text`` (index = code point)."""
    counts = np.zeros(0, dtype=np.int64)
    for _, part in _codepoint_chunks(text):
        c = np.bincount(part)
        if len(c) > len(counts):
            c[: len(counts)] += counts
            counts = c
        else:
            counts[: len(c)] += c
    return counts


def printable(text: str) -> str:
    """Show control characters safely: newline as ↵, tab as →, others as \\xNN."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("→")
        elif ch == "\r":
            out.append("␍")
        elif not ch.isprintable() or ch in "\x0b\x0c":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 corpus, refusing anything we cannot train on with a clear message.

    The file is read once, in one go, into memory: whatever it holds at that moment is
    the corpus, so a file that changes, shrinks or disappears while we look at it gives
    either a usable text or a clean :class:`CorpusError`, never an exception.
    CRLF and lone CR line endings are normalised to LF.
    """
    p, data = _read_bytes(path)
    if data.isascii():
        text = data.decode("ascii")
    else:
        try:  # decoded before any change to the bytes, so the offset is the file's
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _utf8_error(data, p, e) from None
    del data
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(f"corpus has only whitespace: {p}; give a file with some text in it")
    return text


def _read_bytes(path: str | os.PathLike) -> tuple[Path, bytes]:
    """The file's bytes, after every check that needs no decoding (see :func:`read_text`)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CorpusError(f"corpus file not found: {p}; give the path of a UTF-8 text file") from None
    except PermissionError:
        raise CorpusError(f"corpus file is not readable (permission denied): {p}; check its permissions") from None
    except OSError as e:
        raise CorpusError(f"cannot read corpus file {p}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CorpusError(f"corpus path is a directory: {p}; give the path of a UTF-8 text file inside it")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise CorpusError(f"corpus is not a regular file (a device or socket): {p}; give the path of a UTF-8 text file")
    if st.st_size > MAX_CORPUS_BYTES:
        raise CorpusError(f"corpus is {st.st_size / 2**20:,.0f} MiB, more than the {MAX_CORPUS_BYTES >> 20} MiB "
                          f"rnntui reads: {p}; train on an excerpt (e.g. head -c 100M)")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_CORPUS_BYTES + 1)  # one read: the size seen above may be stale already
    except FileNotFoundError:
        raise CorpusError(f"corpus file disappeared while being read: {p}; give a file that stays put") from None
    except PermissionError:
        raise CorpusError(f"corpus file is not readable (permission denied): {p}; check its permissions") from None
    except IsADirectoryError:
        raise CorpusError(f"corpus path is a directory: {p}; give the path of a UTF-8 text file inside it") from None
    except OSError as e:
        raise CorpusError(f"cannot read corpus file {p}: {e.strerror or e}") from None
    if len(data) > MAX_CORPUS_BYTES:
        raise CorpusError(f"corpus is more than the {MAX_CORPUS_BYTES >> 20} MiB rnntui reads: {p}; "
                          "train on an excerpt (e.g. head -c 100M)")
    if not data:
        raise CorpusError(f"corpus file is empty: {p}; give a file with some text in it")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"corpus looks binary (NUL byte at offset {nul}): {p}; give a UTF-8 text file")
    return p, data


def _utf8_error(data: bytes, p: Path, e: UnicodeDecodeError) -> CorpusError:
    if e.end == len(data) and e.reason == "unexpected end of data":
        return CorpusError(
            f"corpus is not valid UTF-8: it ends inside a multi-byte character (byte offset {e.start}): "
            f"{p}; was it still being written? Give a complete UTF-8 text file"
        )
    return CorpusError(
        f"corpus is not valid UTF-8 (bad byte 0x{data[e.start]:02x} at byte offset {e.start}): {p}; "
        "convert it, e.g. with iconv -t UTF-8"
    )


def _code_pieces(data: bytes):
    """The code points of a UTF-8 file's bytes, piece by piece (bounded memory), as :func:`read_text` reads
    them: without a leading BOM, CRLF and lone CR as LF. Raises UnicodeDecodeError on invalid UTF-8."""
    ascii_ = data.isascii()
    has_cr = data.find(b"\r") >= 0
    decoder = None if ascii_ else codecs.getincrementaldecoder("utf-8")()
    carry = b"" if ascii_ else ""
    at_start = True
    step = _PIECE
    for start in range(0, len(data), step):
        last = start + step >= len(data)
        if ascii_ and not has_cr:
            yield np.frombuffer(data, np.uint8, count=min(step, len(data) - start), offset=start)
            continue
        piece = data[start:start + step] if ascii_ else decoder.decode(data[start:start + step], final=last)
        if not ascii_ and piece and at_start:  # the first character decoded: a BOM is dropped
            at_start = False
            piece = piece[1:] if piece[0] == "\ufeff" else piece
        if has_cr:
            piece = carry + piece
            carry = piece[-1:] if not last and piece[-1:] in ("\r", b"\r") else piece[:0]
            piece = piece[:len(piece) - len(carry)]
            cr, lf = ("\r", "\n") if not ascii_ else (b"\r", b"\n")
            piece = piece.replace(cr + lf, lf).replace(cr, lf)
        yield np.frombuffer(piece if ascii_ else piece.encode("utf-32-le"), np.uint8 if ascii_ else np.uint32)


def _encode_file(data: bytes, p: Path, vocab: Vocab | None) -> tuple[Vocab, np.ndarray]:
    """A file's text encoded straight from its bytes: no Python string of the whole text is made.

    Two passes over the pieces: code point counts (the vocabulary, the whitespace check), then the
    encoding. Peak memory is the bytes, the encoded array and one piece.
    """
    counts, n = np.zeros(0, dtype=np.int64), 0
    try:
        for part in _code_pieces(data):
            c = np.bincount(part)
            if len(c) > len(counts):
                c[:len(counts)] += counts
                counts = c
            else:
                counts[:len(c)] += c
            n += len(part)
    except UnicodeDecodeError:
        try:
            data.decode("utf-8")  # again, whole, for the byte offset of the file
        except UnicodeDecodeError as e:
            raise _utf8_error(data, p, e) from None
        raise
    present = np.flatnonzero(counts)
    if all(chr(c).isspace() for c in present):
        raise CorpusError(f"corpus has only whitespace: {p}; give a file with some text in it")
    if vocab is None:
        vocab = Vocab("".join(map(chr, present)))
    missing = np.setdiff1d(present, vocab.codepoints())
    if missing.size:
        raise CorpusError("text has characters outside the vocabulary: "
                          f"{printable(''.join(map(chr, missing[:20])))}")
    table = np.zeros(len(counts), dtype=vocab.dtype)
    known = vocab.codepoints()
    known = known[known < len(table)]
    table[known] = np.searchsorted(vocab.codepoints(), known).astype(vocab.dtype)
    out = np.empty(n, dtype=vocab.dtype)
    pos = 0
    for part in _code_pieces(data):
        np.take(table, part, out=out[pos:pos + len(part)])
        pos += len(part)
    return vocab, out


@dataclass(frozen=True)
class Corpus:
    """An encoded text with its vocabulary, split into training and validation parts."""

    vocab: Vocab
    train: np.ndarray
    val: np.ndarray
    path: str = ""

    @classmethod
    def from_text(cls, text: str, *, val_fraction: float = 0.1, vocab: Vocab | None = None, path: str = "") -> Corpus:
        """Encode ``text`` and split off the last ``val_fraction`` of it for validation."""
        if vocab is None:
            vocab = Vocab.from_text(text)
        return cls._split(vocab.encode(text), vocab, val_fraction, path)

    @classmethod
    def _split(cls, data: np.ndarray, vocab: Vocab, val_fraction: float, path: str) -> Corpus:
        n_val = int(len(data) * val_fraction)
        if n_val < 2:
            n_val = 0
        split = len(data) - n_val
        return cls(vocab=vocab, train=data[:split], val=data[split:], path=path)

    @classmethod
    def load(cls, path, *, val_fraction: float = 0.1, vocab: Vocab | None = None) -> Corpus:
        """Read and encode a UTF-8 file (refused with the messages of :func:`read_text`); the same corpus as
        ``from_text(read_text(path))``, encoded piece by piece from the file's bytes to bound peak memory."""
        p, data = _read_bytes(path)
        vocab, encoded = _encode_file(data, p, vocab)
        del data
        return cls._split(encoded, vocab, val_fraction, str(path))

    def __len__(self) -> int:
        return len(self.train) + len(self.val)

    def check_fits(self, seq_length: int, batch_size: int) -> None:
        """Raise CorpusError unless the training part holds one (B, T) batch with targets."""
        n = len(self.train)
        if len(self) < seq_length + 1:
            raise CorpusError(
                f"corpus has {len(self)} characters but seq length {seq_length} needs at least "
                f"{seq_length + 1}; use a longer text or a smaller --seq-length"
            )
        need = batch_size * seq_length + 1
        if n < need:
            raise CorpusError(
                f"corpus has {n} training characters but batch size {batch_size} × seq length {seq_length} "
                f"needs at least {need}; use a smaller --batch-size or --seq-length (or a longer text)"
            )


class BatchStream:
    """(B, T) batches from ``B`` contiguous streams over ``data``.

    Stream ``b`` covers ``data[b·L : b·L + L + 1]`` with ``L = (len(data) − 1) // B``.
    ``position`` is the offset inside every stream; when fewer than ``T`` targets remain
    the streams start again from 0 and ``epoch`` goes up (the caller should reset h).
    """

    def __init__(self, data: np.ndarray, batch_size: int, seq_length: int, *, position: int = 0, epoch: int = 0):
        self.data = data
        self.B = batch_size
        self.T = seq_length
        self.L = (len(data) - 1) // batch_size
        if self.L < seq_length:
            raise CorpusError(
                f"{len(data)} characters cannot fill batch size {batch_size} × seq length {seq_length}; "
                "use a smaller --batch-size or --seq-length"
            )
        self._starts = (np.arange(batch_size) * self.L)[:, None]
        self._offsets = np.arange(seq_length + 1)[None, :]
        self.position = position
        self.epoch = epoch

    @property
    def batches_per_epoch(self) -> int:
        return self.L // self.T

    @property
    def progress(self) -> float:
        """Fraction of the current epoch done, in [0, 1)."""
        return min(self.position / (self.batches_per_epoch * self.T), 1.0)

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The next ``(inputs, targets, wrapped)``; ``wrapped`` says a new epoch began here."""
        wrapped = False
        if self.position + self.T > self.L:
            self.position = 0
            self.epoch += 1
            wrapped = True
        idx = self._starts + self.position + self._offsets
        chunk = self.data[idx]  # (B, T+1)
        self.position += self.T
        return chunk[:, :-1], chunk[:, 1:], wrapped

    def peek(self) -> tuple[np.ndarray, np.ndarray]:
        """The batch ``next`` would return, without moving on."""
        position = 0 if self.position + self.T > self.L else self.position
        chunk = self.data[self._starts + position + self._offsets]
        return chunk[:, :-1], chunk[:, 1:]

    def state(self) -> dict:
        return {"position": int(self.position), "epoch": int(self.epoch)}
