"""The TF-IDF text features: word 1-2-grams and character 2-5-grams, kept in safe formats (JSON + npz)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer


@dataclass
class TfidfConfig:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    word_max_features: int | None = 400_000
    char_max_features: int | None = 400_000
    char_min_df: int = 2

    def __post_init__(self) -> None:
        for name in ("word_ngrams", "char_ngrams"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ValueError(f"TfidfConfig.{name}={(lo, hi)}: expected 1 <= low <= high")
            setattr(self, name, (int(lo), int(hi)))


def _word_vectorizer(cfg: TfidfConfig) -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=cfg.word_ngrams,
        sublinear_tf=True,
        max_features=cfg.word_max_features,
        dtype=np.float32,
    )


def _char_vectorizer(cfg: TfidfConfig) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=cfg.char_ngrams,
        sublinear_tf=True,
        min_df=cfg.char_min_df,
        max_features=cfg.char_max_features,
        dtype=np.float32,
    )


@dataclass
class TfidfFeatures:
    config: TfidfConfig = field(default_factory=TfidfConfig)
    word: TfidfVectorizer | None = None
    char: TfidfVectorizer | None = None

    def fit(self, texts: list[str]) -> TfidfFeatures:
        self.word = _word_vectorizer(self.config).fit(texts)
        self.char = _char_vectorizer(self.config).fit(texts)
        return self

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        if self.word is None or self.char is None:
            raise RuntimeError("TfidfFeatures.transform called before fit/load")
        return sp.hstack([self.word.transform(texts), self.char.transform(texts)], format="csr")

    @property
    def n_features(self) -> int:
        assert self.word is not None and self.char is not None
        return len(self.word.vocabulary_) + len(self.char.vocabulary_)

    # -- safe persistence: vocabularies in JSON, idf weights in npz; nothing executes on load --
    def save(self, directory: Path) -> list[str]:
        assert self.word is not None and self.char is not None
        meta: dict[str, Any] = {
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__}
        }
        for name, vec in (("word", self.word), ("char", self.char)):
            vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
            meta[f"{name}_vocabulary"] = vocab
        (directory / "tfidf.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(directory / "tfidf.npz", word_idf=self.word.idf_, char_idf=self.char.idf_)
        return ["tfidf.json", "tfidf.npz"]

    @classmethod
    def load(cls, directory: Path) -> TfidfFeatures:
        meta = json.loads((directory / "tfidf.json").read_text(encoding="utf-8"))
        cfg = TfidfConfig(**meta["config"])
        with np.load(directory / "tfidf.npz", allow_pickle=False) as arrays:
            idf = {k: arrays[k] for k in arrays.files}
        out = cls(cfg, _word_vectorizer(cfg), _char_vectorizer(cfg))
        for name, vec in (("word", out.word), ("char", out.char)):
            assert vec is not None
            vocab = meta[f"{name}_vocabulary"]
            weights = idf[f"{name}_idf"]
            if len(vocab) != len(weights):
                raise ValueError(
                    f"tfidf: {name} vocabulary has {len(vocab)} terms but {len(weights)} weights"
                )
            vec.vocabulary_ = {term: i for i, term in enumerate(vocab)}
            vec.idf_ = weights
        return out
