"""Query token features: per-query files, a dict keyed by the query text, an h5 per annotation id,
or GloVe word vectors embedded on the fly.

Every source answers `load(query) -> (t, C) float32`, `shape(query) -> (t, C)` (without building
the array where the format allows), `locate(query) -> str` (for messages and the data report) and
`exists(query) -> bool`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from hieramamba.data.features import FileFeature, find_array_file, load_array_file, to_float32_2d
from hieramamba.data.records import Query
from hieramamba.errors import DataError

_WORD = re.compile(r"\w+")


def tokenize(sentence: str) -> list[str]:
    """HieraMamba's GloVe tokenizer: lower-case, regex `\\w+` words."""
    return _WORD.findall(sentence.lower())


class GloVe:
    """Word vectors from a user-given `glove.*.txt` file (never downloaded).

    Each line is `word v_1 ... v_d`; d is inferred from the first line. With `vocab`, only those
    words are kept in memory (the full 6B-300d file holds 400k words). Unknown words embed to a
    zero vector, as HieraMamba does.
    """

    def __init__(self, path: str | Path, vocab: Iterable[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "GloVe file not found (give the path to glove.6B.300d.txt; it is never downloaded)")
        keep = None if vocab is None else set(vocab)
        self.vectors: dict[str, np.ndarray] = {}
        self.dim: int | None = None
        try:
            f = open(self.path, "rb")  # decoded line by line, so that a bad byte is reported with its line
        except OSError as exc:
            raise DataError(self.path, f"unreadable GloVe file: {exc}") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(self.path, f"line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start} of "
                                               "the line); GloVe files are UTF-8") from None
                parts = line.rstrip("\n").rstrip("\r").rstrip(" ").split(" ")
                if len(parts) < 2:
                    if not line.strip():
                        continue
                    raise DataError(self.path, f"line {lineno}: expected 'word v1 ... vd'", record=parts[0])
                word, values = parts[0], parts[1:]
                if self.dim is None:
                    self.dim = len(values)
                elif len(values) != self.dim:
                    raise DataError(self.path, f"line {lineno}: {len(values)} values, expected {self.dim}", record=word)
                if keep is not None and word not in keep:
                    continue
                try:
                    vec = np.asarray(values, dtype=np.float32)
                except ValueError:
                    raise DataError(self.path, f"line {lineno}: non-numeric vector", record=word) from None
                if not np.isfinite(vec).all():
                    raise DataError(self.path, f"line {lineno}: NaN/Inf in the vector", record=word)
                self.vectors[word] = vec
        if self.dim is None:
            raise DataError(self.path, "empty GloVe file")

    def embed(self, sentence: str) -> np.ndarray:
        """(t, d) float32, one row per `\\w+` token; unknown words are zero rows."""
        words = tokenize(sentence)
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        for i, w in enumerate(words):
            vec = self.vectors.get(w)
            if vec is not None:
                out[i] = vec
        return out

    def unknown_words(self, sentence: str) -> list[str]:
        return [w for w in tokenize(sentence) if w not in self.vectors]


class GloVeText:
    """Text source embedding each query's sentence with GloVe."""

    def __init__(self, glove: GloVe):
        self.glove = glove

    def locate(self, query: Query) -> str:
        return str(self.glove.path)

    def exists(self, query: Query) -> bool:
        return True

    def load(self, query: Query) -> np.ndarray:
        return self.glove.embed(query.sentence)

    def shape(self, query: Query) -> tuple[int, int]:
        return len(tokenize(query.sentence)), int(self.glove.dim)


class DirTextFeatures:
    """One file per query: `<dir>/<stem>.npy|.pt` with stem = stem_of(query)."""

    def __init__(self, directory: str | Path, stem_of: Callable[[Query], str]):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(self.directory, "text feature directory not found")
        self.stem_of = stem_of

    def locate(self, query: Query) -> str:
        found = find_array_file(self.directory, self.stem_of(query))
        return str(found if found is not None else self.directory / f"{self.stem_of(query)}.npy|.pt")

    def exists(self, query: Query) -> bool:
        return find_array_file(self.directory, self.stem_of(query)) is not None

    def load(self, query: Query) -> np.ndarray:
        found = find_array_file(self.directory, self.stem_of(query))
        if found is None:
            raise DataError(self.locate(query), "text feature file not found", record=query.query_id)
        return to_float32_2d(load_array_file(found, query.query_id), found, query.query_id)

    def shape(self, query: Query) -> tuple[int, ...]:
        found = find_array_file(self.directory, self.stem_of(query))
        if found is None:
            raise DataError(self.locate(query), "text feature file not found", record=query.query_id)
        return FileFeature(str(found), record=query.query_id).shape()  # a .npy header only


class DictTextFeatures:
    """One .pt / .npy file holding {query text: (t, C)} (EgoVLP's `sentence.npy` style).

    Looked up by the raw query text (identity['raw_query'] when the reader kept it), then by the
    stripped sentence.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        obj = load_array_file(self.path, allow_pickle=True)
        if not isinstance(obj, dict):
            raise DataError(self.path, f"expected a dict {{query text: features}}, found {type(obj).__name__}")
        self.table = obj

    def _key(self, query: Query):
        for key in (query.identity.get("raw_query"), query.sentence):
            if key is not None and key in self.table:
                return key
        return None

    def locate(self, query: Query) -> str:
        return str(self.path)

    def exists(self, query: Query) -> bool:
        return self._key(query) is not None

    def load(self, query: Query) -> np.ndarray:
        key = self._key(query)
        if key is None:
            raise DataError(self.path, f"no features for the query text {query.sentence!r}", record=query.query_id)
        return to_float32_2d(self.table[key], self.path, query.query_id)

    def shape(self, query: Query) -> tuple[int, ...]:
        return self.load(query).shape  # already in memory


class H5TextFeatures:
    """An h5 file with one dataset per query id (MAD language tokens: per annotation id)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "text feature file not found")
        self._keys: set[str] | None = None
        self._file = None  # kept open per process: one dataset is read per query
        self._pid = None

    def _open(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(self.path, f"unreadable h5 file: {exc}") from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):  # picklable for data-loader workers: reopen there
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def locate(self, query: Query) -> str:
        return str(self.path)

    def exists(self, query: Query) -> bool:
        if self._keys is None:
            self._keys = set(self._open().keys())
        return query.query_id in self._keys

    def load(self, query: Query) -> np.ndarray:
        f = self._open()
        if query.query_id not in f:
            raise DataError(self.path, "no language-token dataset for this annotation id", record=query.query_id)
        return to_float32_2d(f[query.query_id][()], self.path, query.query_id)

    def shape(self, query: Query) -> tuple[int, ...]:
        f = self._open()
        if query.query_id not in f:
            raise DataError(self.path, "no language-token dataset for this annotation id", record=query.query_id)
        return tuple(f[query.query_id].shape)


def make_text_source(text_features: str | Path | None, glove: str | Path | None, stem_of: Callable[[Query], str], vocab: Iterable[str] | None = None):
    """The text source a config names: GloVe file, a dict file, an h5 file or a directory."""
    if glove is not None:
        return GloVeText(GloVe(glove, vocab=vocab))
    if text_features is None:
        return None
    p = Path(text_features)
    if p.is_dir():
        return DirTextFeatures(p, stem_of)
    if p.suffix in (".h5", ".hdf5"):
        return H5TextFeatures(p)
    if p.suffix in (".pt", ".npy"):
        return DictTextFeatures(p)
    raise DataError(p, "text features must be a directory, a .pt/.npy dict file or an .h5 file (not found or unknown type)")
