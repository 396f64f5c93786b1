"""Corpus reading, vocabulary, encoding, and the batch streams of truncated BPTT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnntui import corpus as corpus_mod
from rnntui.corpus import BatchStream, Corpus, CorpusError, Vocab, printable, read_text

# -- vocabulary and encoding ---------------------------------------------------------------------------


def test_vocab_is_sorted_distinct_characters():
    v = Vocab.from_text("hello, world\n")
    assert v.chars == "\n ,dehlorw"
    assert v.size == 10
    assert v.index()["h"] == v.chars.index("h")
    with pytest.raises(CorpusError):
        Vocab("ba")
    with pytest.raises(CorpusError):
        Vocab("aab")
    with pytest.raises(CorpusError):
        Vocab("")


def test_roundtrip_non_ascii():
    text = "Grüße, 世界! Ελληνικά — naïve café 🙂\n"
    v = Vocab.from_text(text)
    assert list(v.chars) == sorted(set(text))
    ids = v.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text)
    assert v.decode(ids) == text
    assert [v.chars[i] for i in ids] == list(text)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_roundtrip_property(text):
    v = Vocab.from_text(text)
    assert v.chars == "".join(sorted(set(text)))
    ids = v.encode(text)
    assert v.decode(ids) == text
    assert int(ids.max()) < v.size


@pytest.mark.parametrize(("n", "dtype"), [(1, np.uint8), (200, np.uint8), (256, np.uint8), (257, np.uint16),
                                          (300, np.uint16), (70_000, np.uint32)])
def test_smallest_dtype(n, dtype):
    """uint8 holds indices 0…255, so up to 256 distinct characters; beyond that uint16, then uint32."""
    chars = "".join(chr(c) for c in range(0x100, 0x100 + n + 0x800) if not 0xD800 <= c < 0xE000)[:n]  # no surrogates
    text = chars + chars[::-1]
    v = Vocab.from_text(text)
    assert v.size == n
    ids = v.encode(text)
    assert ids.dtype == dtype
    assert v.decode(ids) == text


def test_encode_refuses_unknown_characters():
    v = Vocab.from_text("abc")
    with pytest.raises(CorpusError, match="outside the vocabulary: xz"):
        v.encode("abzcx")
    with pytest.raises(CorpusError, match="é"):
        v.encode("abé")
    assert v.missing("abzzx") == "xz"


def test_chunked_encoding_and_counts(monkeypatch):
    """Long texts are encoded in chunks; chunk borders must not change anything (ASCII and not)."""
    monkeypatch.setattr(corpus_mod, "_CHUNK", 7)
    for text in ("the quick brown fox jumps over the lazy dog\n" * 3, "ünïcödé text, ok? ünïcödé\n" * 3):
        v = Vocab.from_text(text)
        assert v.chars == "".join(sorted(set(text)))
        counts = corpus_mod.codepoint_counts(text)
        for c in set(text):
            assert counts[ord(c)] == text.count(c)
        assert v.decode(v.encode(text)) == text
        with pytest.raises(CorpusError, match="#"):
            v.encode(text + "#")


def test_printable():
    assert printable("a\nb\tc\r\x01") == "a↵b→c␍\\x01"


# -- reading files --------------------------------------------------------------------------------------


def test_read_text_crlf_and_bom(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    assert read_text(p) == "one\ntwo\nthree\n"
    p.write_bytes("Grüße\r\n".encode())
    assert read_text(p) == "Grüße\n"


@pytest.mark.parametrize(("content", "offset"), [(b"abc\xffdef", 3), (b"ab\r\ncd\xfe", 6),
                                                  ("é".encode() + b"\xc3(", 2), (b"\xef\xbb\xbfxy\x80", 5)])
def test_invalid_utf8_names_the_byte_offset(tmp_path, content, offset):
    """The offset is that of the file as stored (before BOM removal and CRLF normalisation)."""
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError) as e:
        read_text(p)
    msg = str(e.value)
    assert "not valid UTF-8" in msg and f"byte offset {offset}" in msg and f"0x{content[offset]:02x}" in msg
    assert str(p) in msg


@pytest.mark.parametrize(("content", "words"), [
    (b"", "empty"),
    (b"   \n\t \r\n", "only whitespace"),
    (b"text\x00more", "NUL byte at offset 4"),
])
def test_refused_contents(tmp_path, content, words):
    p = tmp_path / "c.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=words):
        read_text(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="directory"):
        read_text(tmp_path)


def test_corpus_split_and_fit(tmp_path):
    text = "abcdefghij" * 10
    c = Corpus.from_text(text, val_fraction=0.2)
    assert len(c.train) == 80 and len(c.val) == 20 and len(c) == 100
    assert c.vocab.decode(np.concatenate([c.train, c.val])) == text
    assert len(Corpus.from_text("abcdefghij", val_fraction=0.1).val) == 0  # one held-out char is no validation
    c.check_fits(seq_length=25, batch_size=3)  # 3·25 + 1 = 76 ≤ 80
    with pytest.raises(CorpusError, match="batch size 4"):
        c.check_fits(seq_length=25, batch_size=4)
    with pytest.raises(CorpusError, match="needs at least 101"):
        c.check_fits(seq_length=100, batch_size=1)
    p = tmp_path / "c.txt"
    p.write_text(text)
    loaded = Corpus.load(p, val_fraction=0.2)
    assert loaded.path == str(p) and np.array_equal(loaded.train, c.train)


# -- batch streams ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "B", "T"), [(101, 4, 5), (57, 3, 4), (30, 1, 7), (11, 2, 5)])
def test_batch_stream_contiguous_streams_and_wrap(n, B, T):
    data = np.arange(n)  # each value is its own position, so contiguity is visible
    s = BatchStream(data, B, T)
    L = (n - 1) // B
    assert s.L == L and s.batches_per_epoch == L // T
    prev = None
    for k in range(s.batches_per_epoch):
        assert s.progress == pytest.approx(k / s.batches_per_epoch)
        x, y, wrapped = s.next()
        assert x.shape == (B, T) == y.shape and not wrapped
        np.testing.assert_array_equal(y, x + 1)  # targets are the next characters
        for b in range(B):
            np.testing.assert_array_equal(x[b], np.arange(b * L + k * T, b * L + k * T + T))
            if prev is not None:
                assert x[b, 0] == prev[b, -1] + 1  # batch k+1 continues batch k in every row
        assert x.max() < n - 1 and y.max() <= n - 1
        prev = x
    assert s.epoch == 0
    x, y, wrapped = s.next()
    assert wrapped and s.epoch == 1
    np.testing.assert_array_equal(x[:, 0], np.arange(B) * L)  # back to the start of every stream
    assert s.state() == {"position": T, "epoch": 1}
    assert s.progress == pytest.approx(1 / s.batches_per_epoch)


def test_batch_stream_resumes_from_state():
    data = np.arange(200)
    a = BatchStream(data, 3, 6)
    for _ in range(5):
        a.next()
    b = BatchStream(data, 3, 6, **a.state())
    for _ in range(20):
        xa, ya, wa = a.next()
        xb, yb, wb = b.next()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and wa == wb


def test_batch_stream_too_short():
    with pytest.raises(CorpusError, match="cannot fill"):
        BatchStream(np.arange(20), 4, 5)
    BatchStream(np.arange(21), 4, 5)  # (21 − 1) // 4 = 5 = T: exactly one batch
