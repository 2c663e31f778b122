"""Why the model said so: exact contributions to a prediction, computed on demand (never on the hot path).

Two decompositions, both exact (they add up to the model's own numbers, to rounding):

* **Branches.** The fused logit of a type is ``z_k = sum_j w_j * branch_j[k] + bias_k``, so the log-odds of
  the predicted type against the runner-up, ``z_p - z_r``, is the sum of one term per branch,
  ``w_j * (branch_j[p] - branch_j[r])``, plus the bias difference ``bias_p - bias_r``.
* **Words.** The TF-IDF head is linear: its score of a type is ``sum_f x_f * coef[k, f] + b_k``. Each n-gram
  ``f`` of the text therefore contributes ``x_f * coef[k, f] * w_text`` to the fused logit of type ``k``
  (``w_text`` being the text branch's fusion weight). Word n-grams belong to the word(s) they join and
  character n-grams to the word(s) whose characters they hold (``char`` n-grams may cross a space, those of
  older ``char_wb`` models never do; one of spaces alone belongs to the words beside it); an n-gram seen
  several times shares its contribution equally between its occurrences, and an n-gram spanning several
  words equally between them, so the words' contributions add up to the n-grams' exactly.

The words are the whitespace-separated words of the text the model reads (the cleaned title, then the
cleaned description), with their offsets in the cleaned title and description, so that a page can
highlight them in the text it shows.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from prodtype.data.text import clean_text
from prodtype.ml.fusion import stack_branches
from prodtype.ml.model import FusedModel
from prodtype.ml.predictor import ProductInput
from prodtype.ml.text import TfidfFeatures

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from prodtype.ml.bundle import ModelBundle

Field = Literal["title", "description", "separator"]
SEPARATOR = " . "  # prodtype.data.text.join_text puts it between the title and the description
_WORD = re.compile(r"\S+")
DECISIVE = 5  # words highlighted per direction
DECISIVE_SHARE = 0.1  # ... when their contribution is at least this share of the largest one


@dataclass(frozen=True)
class NgramContribution:
    """One n-gram of the text: its TF-IDF value and what it adds to each type's fused logit."""

    ngram: str
    kind: Literal["word", "char"]
    value: float
    to_predicted: float
    to_runner_up: float
    words: tuple[int, ...]  # indices into Explanation.words

    @property
    def margin(self) -> float:
        """What it adds to the log-odds of the predicted type against the runner-up."""
        return self.to_predicted - self.to_runner_up


@dataclass(frozen=True)
class WordContribution:
    """A word of the title or description (offsets in the cleaned field) and its n-grams' contributions."""

    text: str
    field: Field
    start: int
    end: int
    to_predicted: float
    to_runner_up: float

    @property
    def margin(self) -> float:
        return self.to_predicted - self.to_runner_up


@dataclass(frozen=True)
class BranchContribution:
    """A branch's share of the log-odds: ``weight * (score_predicted - score_runner_up)``."""

    name: str
    weight: float
    score_predicted: float
    score_runner_up: float
    own_choice: int  # the type this branch alone scores highest (class index)

    @property
    def contribution(self) -> float:
        return self.weight * (self.score_predicted - self.score_runner_up)


@dataclass(frozen=True)
class Piece:
    """A stretch of a field's text for highlighting: ``level`` 0 is plain text, 1-3 a decisive word
    (3 the strongest); ``direction`` +1 toward the predicted type, -1 toward the runner-up."""

    text: str
    level: int = 0
    direction: int = 0
    margin: float = 0.0


@dataclass(frozen=True)
class Explanation:
    classes: tuple[int, ...]
    predicted: int  # class index
    runner_up: int  # class index
    proba: tuple[float, ...]
    title: str  # cleaned, as the model read it
    description: str  # cleaned; "" when the model did not read one
    has_image: bool
    branches: tuple[BranchContribution, ...]
    bias: float  # fusion bias of the predicted type minus the runner-up's
    words: tuple[WordContribution, ...]
    ngrams: tuple[NgramContribution, ...]  # by decreasing |margin|
    text_intercepts: tuple[float, float]  # w_text * intercept of the predicted type, of the runner-up
    unplaced: tuple[float, float] = (0.0, 0.0)  # n-gram contributions found in no word (never expected)

    @property
    def predicted_code(self) -> int:
        return self.classes[self.predicted]

    @property
    def runner_up_code(self) -> int:
        return self.classes[self.runner_up]

    @property
    def log_odds(self) -> float:
        """Fused logit of the predicted type minus the runner-up's (= log of their probability ratio)."""
        return sum(b.contribution for b in self.branches) + self.bias

    @property
    def photo(self) -> BranchContribution | None:
        return self.branches[-1] if self.has_image else None

    @property
    def photo_disagrees(self) -> bool:
        """The photo branch alone points to another type than the prediction."""
        photo = self.photo
        return photo is not None and photo.own_choice != self.predicted

    def top_words(
        self, n: int = DECISIVE, toward: Literal["predicted", "runner_up"] = "predicted"
    ) -> list[int]:
        """Indices of the ``n`` title/description words pushing most toward one side (margin > 0 for the
        predicted type, < 0 for the runner-up), strongest first."""
        sign = 1.0 if toward == "predicted" else -1.0
        shown = [i for i, w in enumerate(self.words) if w.field != "separator" and sign * w.margin > 0]
        return sorted(shown, key=lambda i: -sign * self.words[i].margin)[:n]


def _fields(model_text: str, title: str, description: str) -> list[tuple[Field, int, str]]:
    """(field, offset in the model's text, field text) for the title, the separator and the description."""
    if model_text == title:
        return [("title", 0, title)]
    if model_text != f"{title}{SEPARATOR}{description}":
        raise ValueError("the model's text is not the cleaned title and description joined")
    return [
        ("title", 0, title),
        ("separator", len(title), SEPARATOR),
        ("description", len(title) + len(SEPARATOR), description),
    ]


def _words(model_text: str, title: str, description: str) -> list[tuple[Field, int, int, str]]:
    """The whitespace-separated words of the model's text: (field, start, end in the field, text)."""
    out: list[tuple[Field, int, int, str]] = []
    for name, _offset, text in _fields(model_text, title, description):
        out.extend((name, m.start(), m.end(), m.group()) for m in _WORD.finditer(text))
    return out


Occurrences = dict[int, list[tuple[int, ...]]]
Names = dict[int, tuple[str, Literal["word", "char"]]]


def _occurrences(tfidf: TfidfFeatures, words: list[str]) -> tuple[Occurrences, Names]:
    """feature index -> the words (tuple of word indices) of each occurrence of that n-gram in the text,
    and feature index -> (n-gram, kind)."""
    if tfidf.word is None or tfidf.char is None:
        raise RuntimeError("the TF-IDF features are not fitted")
    found: Occurrences = defaultdict(list)
    names: Names = {}
    preprocess, tokenize = tfidf.word.build_preprocessor(), tfidf.word.build_tokenizer()
    tokens = [(tok, i) for i, w in enumerate(words) for tok in tokenize(preprocess(w))]
    lo, hi = tfidf.word.ngram_range
    vocab = tfidf.word.vocabulary_
    for n in range(lo, hi + 1):
        for start in range(len(tokens) - n + 1):
            window = tokens[start : start + n]
            gram = " ".join(t for t, _ in window)
            index = vocab.get(gram)
            if index is not None:
                found[index].append(tuple(dict.fromkeys(i for _, i in window)))
                names[index] = (gram, "word")
    char_vocab, offset = tfidf.char.vocabulary_, len(vocab)
    for gram, owners in _char_grams(tfidf.char, words):
        index = char_vocab.get(gram)
        if index is not None:
            found[offset + index].append(owners)
            names[offset + index] = (gram, "char")
    return found, names


def _char_grams(vec: TfidfVectorizer, words: list[str]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The character n-grams ``vec`` cuts from the words joined by single spaces, each with the indices of
    the words it holds characters of. ``char_wb`` cuts each word on its own (one word each); ``char`` cuts
    the whole text, so an n-gram may span a space (its words on both sides; one of spaces alone, the words
    beside it), as scikit-learn's analyzer does on a text whose words are separated by single spaces."""
    if vec.analyzer == "char_wb":
        analyze = vec.build_analyzer()
        for i, w in enumerate(words):
            for gram in analyze(w):
                yield gram, (i,)
        return
    preprocess = vec.build_preprocessor()
    parts = [preprocess(w) for w in words]
    text = " ".join(parts)
    # for each character: the word of the first non-space character at or after it (nxt), and of the last
    # one at or before it (prv); -1 past either end
    owner: list[int] = []  # each character's word, -1 for the spaces between words
    for i, part in enumerate(parts):
        owner += [i] * len(part) + [-1]
    del owner[len(text) :]
    nxt, prv = [-1] * (len(text) + 1), [-1] * (len(text) + 1)
    for c in range(len(text) - 1, -1, -1):
        nxt[c] = owner[c] if owner[c] >= 0 else nxt[c + 1]
    for c in range(len(text)):
        prv[c] = owner[c] if owner[c] >= 0 else prv[c - 1] if c else -1
    lo, hi = vec.ngram_range
    for n in range(lo, hi + 1):
        for s in range(len(text) - n + 1):
            first, last = nxt[s], prv[s + n - 1]
            if first < 0 or last < 0 or first > last:  # spaces only: the words on either side
                yield text[s : s + n], tuple(i for i in dict.fromkeys((prv[s], nxt[s])) if i >= 0)
            else:
                yield text[s : s + n], tuple(range(first, last + 1))


def _branch_names(n: int, has_embedding: bool) -> list[str]:
    names = ["text", *(["embedding"] if has_embedding else []), "image"]
    # another set of branches than this module knows: the text branch is first and the photo last
    return names if len(names) == n else ["text", *(f"branch {j}" for j in range(1, n - 1)), "image"]


def explain_branches(
    model: FusedModel,
    model_text: str,
    title: str,
    description: str,
    text_scores: np.ndarray,
    embed_logp: np.ndarray | None,
    image_logp: np.ndarray,
    has_image: bool,
) -> Explanation:
    """The explanation of one product from its branches' outputs (each of shape (1, n_classes))."""
    has = np.array([has_image])
    stacked = stack_branches(text_scores, embed_logp, image_logp, has)[:, 0, :]  # (n_branches, n_classes)
    weights = np.asarray(model.fusion.weights[int(has_image)], dtype=np.float64)
    if weights.shape != (stacked.shape[0],):
        raise ValueError(f"the fusion has {weights.shape} weights for {stacked.shape[0]} branches")
    logits = weights @ stacked + model.fusion.bias
    proba = np.exp(logits - logits.max())
    proba /= proba.sum()
    order = np.argsort(-logits, kind="stable")
    p, r = int(order[0]), int(order[1])
    names = _branch_names(stacked.shape[0], embed_logp is not None)
    branches = tuple(
        BranchContribution(
            names[j],
            float(weights[j]),
            float(stacked[j, p]),
            float(stacked[j, r]),
            int(np.argmax(stacked[j])),
        )
        for j in range(stacked.shape[0])
    )

    head = model.text_head
    if head.mean is not None or head.scale is not None:
        raise ValueError("the text head standardises its features; its contributions are not per n-gram")
    w_text = float(weights[0])
    row = model.tfidf.transform([model_text])
    idx, val = row.indices, row.data.astype(np.float64)
    coef = head.coef
    to_p = val * coef[p, idx].astype(np.float64) * w_text
    to_r = val * coef[r, idx].astype(np.float64) * w_text

    spans = _words(model_text, title, description)
    occurrences, names_by_index = _occurrences(model.tfidf, [s[3] for s in spans])
    word_p = np.zeros(len(spans))
    word_r = np.zeros(len(spans))
    unplaced = [0.0, 0.0]
    covered: list[tuple[int, ...]] = []
    for j, cp, cr in zip(idx.tolist(), to_p.tolist(), to_r.tolist(), strict=True):
        occ = occurrences.get(j, [])
        if not occ:
            unplaced[0] += cp
            unplaced[1] += cr
            covered.append(())
            continue
        for units in occ:
            share = 1.0 / (len(occ) * len(units))
            for u in units:
                word_p[u] += cp * share
                word_r[u] += cr * share
        covered.append(tuple(sorted({u for units in occ for u in units})))
    ngrams = sorted(
        (
            NgramContribution(
                *names_by_index.get(j, (f"feature {j}", "word")),
                value=float(v),
                to_predicted=float(cp),
                to_runner_up=float(cr),
                words=units,
            )
            for j, v, cp, cr, units in zip(idx.tolist(), val, to_p, to_r, covered, strict=True)
        ),
        key=lambda g: -abs(g.margin),
    )
    words = tuple(
        WordContribution(text, name, start, end, float(word_p[i]), float(word_r[i]))
        for i, (name, start, end, text) in enumerate(spans)
    )
    return Explanation(
        classes=tuple(int(c) for c in model.classes),
        predicted=p,
        runner_up=r,
        proba=tuple(float(x) for x in proba),
        title=title,
        description=description if len(_fields(model_text, title, description)) > 1 else "",
        has_image=has_image,
        branches=branches,
        bias=float(model.fusion.bias[p] - model.fusion.bias[r]),
        words=words,
        ngrams=tuple(ngrams),
        text_intercepts=(w_text * float(head.intercept[p]), w_text * float(head.intercept[r])),
        unplaced=(unplaced[0], unplaced[1]),
    )


def highlight(explanation: Explanation) -> dict[str, list[Piece]]:
    """The title and the description cut into plain stretches and decisive words, for a page to show
    (it must escape every piece: they are the seller's text)."""
    decisive = set(explanation.top_words(DECISIVE, "predicted")) | set(
        explanation.top_words(DECISIVE, "runner_up")
    )
    strongest = max((abs(explanation.words[i].margin) for i in decisive), default=0.0)
    out: dict[str, list[Piece]] = {}
    for name, text in (("title", explanation.title), ("description", explanation.description)):
        pieces: list[Piece] = []
        at = 0
        for i, w in enumerate(explanation.words):
            if w.field != name:
                continue
            strength = abs(w.margin) / strongest if strongest > 0 else 0.0
            if i not in decisive or strength < DECISIVE_SHARE:
                continue
            if w.start > at:
                pieces.append(Piece(text[at : w.start]))
            level = max(1, min(3, math.ceil(3 * strength)))
            pieces.append(Piece(text[w.start : w.end], level, 1 if w.margin > 0 else -1, w.margin))
            at = w.end
        if at < len(text):
            pieces.append(Piece(text[at:]))
        out[name] = pieces
    return out


def explain(
    bundle: ModelBundle, designation: str, description: str = "", image: bytes | None = None
) -> Explanation:
    """Why ``bundle`` predicts what it does for this product (the photo's ImageError when unusable; a
    ValueError for a title that is empty once cleaned)."""
    text = bundle.prepare_text(ProductInput(designation, description or ""))
    text_scores, embed_logp = bundle.text_branches([text])
    model = bundle.model
    has = np.array([image is not None])
    if image is not None:
        features = bundle.image_features([bundle.prepare_image(image)])
    else:
        features = np.zeros((1, model.image_head.coef.shape[1]), np.float32)
    image_logp = model.image_branch(features, has)
    return explain_branches(
        model,
        text,
        clean_text(designation),
        clean_text(description),
        text_scores,
        embed_logp,
        image_logp,
        image is not None,
    )
