"""Explanations on the session's real ``trained_bundle``: exact (they add up to the model's own scores),
stable, pointing at words whose removal really lowers the predicted type's score, and mapped onto the
words of the title and description as the page shows them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodtype.data.text import clean_text
from prodtype.ml.bundle import ModelBundle, load_bundle
from prodtype.ml.explain import Explanation, _char_grams, explain, highlight
from prodtype.ml.fusion import stack_branches
from prodtype.ml.predictor import ProductInput
from prodtype.ml.text import TfidfConfig, TfidfFeatures

POOL = "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe de filtration"
CLEAR_CUT = [
    ("Pompe de filtration pour piscine hors-sol 6 m3/h", ""),
    ("Fifa 18 [Jeu PS4] PlayStation 4", ""),
    ("Manette sans fil Dualshock 4 pour Sony PlayStation 4 - Noir", ""),
    ("Collier réglable pour chien en nylon, taille M", "Collier <b>solide</b> &amp; confortable"),
    ("Le Petit Prince - Antoine de Saint-Exupéry", "Roman, édition de poche, 96 pages."),
]


@pytest.fixture(scope="module")
def bundle(trained_bundle: Path) -> ModelBundle:
    return load_bundle(trained_bundle)


@pytest.fixture(scope="module")
def products(sample_dataset) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return sample_dataset.products.head(60)


@pytest.fixture(scope="module")
def photos(sample_dataset) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Photos of pools (label 2583, like POOL's text) and of other products."""
    with_image = sample_dataset.products[sample_dataset.products["image_path"].notna()]
    pools = with_image[with_image["label"] == 2583]["image_path"].head(4)
    others = with_image[with_image["label"] != 2583]["image_path"].head(8)
    return [Path(p).read_bytes() for p in [*pools, *others]]


def fused_logits(bundle: ModelBundle, title: str, description: str, image: bytes | None = None) -> np.ndarray:
    """The model's fused logits, computed here from its public parts (not by the explanation's code)."""
    text = bundle.prepare_text(ProductInput(title, description))
    text_scores, embed_logp = bundle.text_branches([text])
    has = np.array([image is not None])
    feats = (
        bundle.image_features([bundle.prepare_image(image)])
        if image is not None
        else np.zeros((1, bundle.model.image_head.coef.shape[1]), np.float32)
    )
    branches = stack_branches(text_scores, embed_logp, bundle.model.image_branch(feats, has), has)
    return bundle.model.fusion.logits(branches, has)[0]


def text_scores(bundle: ModelBundle, title: str, description: str) -> np.ndarray:
    return bundle.text_branches([bundle.prepare_text(ProductInput(title, description))])[0][0]


def without_word(e: Explanation, index: int) -> tuple[str, str]:
    word = e.words[index]
    if word.field == "title":
        return e.title[: word.start] + e.title[word.end :], e.description
    return e.title, e.description[: word.start] + e.description[word.end :]


def test_the_explanation_names_the_models_answer(bundle: ModelBundle, photos: list[bytes]) -> None:
    for title, description in CLEAR_CUT:
        e = explain(bundle, title, description, photos[0])
        answer = bundle.predict(title, description, photos[0])
        assert e.predicted_code == answer.prdtypecode
        assert e.runner_up_code == answer.top_k[1].prdtypecode
        assert e.proba[e.predicted] == pytest.approx(answer.confidence, abs=1e-6)


@pytest.mark.parametrize("with_photo", [False, True])
def test_contributions_add_up_to_the_models_scores(
    bundle: ModelBundle, products: pd.DataFrame, photos: list[bytes], with_photo: bool
) -> None:
    """Exactness: n-grams (and words) + intercept = the text head's fused score of each type; branches + bias
    = the fused log-odds of the predicted type against the runner-up."""
    for i, (_, row) in enumerate(products.head(20).iterrows()):
        image = photos[i % len(photos)] if with_photo else None
        e = explain(bundle, row["designation"], row["description"], image)
        p, r = e.predicted, e.runner_up
        scores = text_scores(bundle, row["designation"], row["description"])
        w_text = e.branches[0].weight
        assert e.branches[0].name == "text" and e.unplaced == (0.0, 0.0)
        for side, k in ((0, p), (1, r)):
            by_ngram = sum(g.to_predicted if side == 0 else g.to_runner_up for g in e.ngrams)
            by_word = sum(w.to_predicted if side == 0 else w.to_runner_up for w in e.words)
            assert by_ngram + e.text_intercepts[side] == pytest.approx(w_text * scores[k], abs=1e-4)
            assert by_word == pytest.approx(by_ngram, abs=1e-9)
        margin = sum(g.margin for g in e.ngrams) + e.text_intercepts[0] - e.text_intercepts[1]
        assert margin == pytest.approx(e.branches[0].contribution, abs=1e-4)
        logits = fused_logits(bundle, row["designation"], row["description"], image)
        assert e.log_odds == pytest.approx(logits[p] - logits[r], abs=1e-6)
        assert np.log(e.proba[p] / e.proba[r]) == pytest.approx(e.log_odds, abs=1e-6)
        assert (e.photo is not None) == with_photo
        if not with_photo:
            assert e.branches[-1].name == "image" and e.branches[-1].contribution == 0.0


def test_removing_the_top_word_lowers_the_predicted_types_score(
    bundle: ModelBundle, products: pd.DataFrame
) -> None:
    checked = 0
    for _, row in products.iterrows():
        e = explain(bundle, row["designation"], row["description"])
        top = e.top_words(1)
        if not top:
            continue
        title, description = without_word(e, top[0])
        if not title.strip():
            continue
        code = e.predicted
        before, after = fused_logits(bundle, e.title, e.description), fused_logits(bundle, title, description)
        assert after[code] < before[code], (e.words[top[0]], before[code], after[code])
        assert (
            text_scores(bundle, title, description)[code] < text_scores(bundle, e.title, e.description)[code]
        )
        checked += 1
    assert checked >= 50


@pytest.mark.parametrize(("title", "description"), CLEAR_CUT)
def test_removing_the_top_word_lowers_the_confidence_on_clear_products(
    bundle: ModelBundle, title: str, description: str
) -> None:
    e = explain(bundle, title, description)
    before = bundle.predict(e.title, e.description)
    changed = bundle.predict(*without_word(e, e.top_words(1)[0]), k=len(bundle.classes))
    after = {c.prdtypecode: c.probability for c in changed.top_k}[before.prdtypecode]
    assert after < before.confidence


def test_explanations_of_the_same_input_are_identical(
    bundle: ModelBundle, trained_bundle: Path, photos: list[bytes]
) -> None:
    first = explain(bundle, POOL, "Piscine hors sol facile à monter", photos[1])
    assert explain(bundle, POOL, "Piscine hors sol facile à monter", photos[1]) == first
    assert explain(load_bundle(trained_bundle), POOL, "Piscine hors sol facile à monter", photos[1]) == first
    assert highlight(first) == highlight(first)


def test_the_photo_disagrees_exactly_when_the_image_head_alone_points_elsewhere(
    bundle: ModelBundle, photos: list[bytes]
) -> None:
    seen = set()
    for photo in photos:
        e = explain(bundle, POOL, "", photo)
        alone = bundle.model.image_head.log_proba(bundle.image_features([bundle.prepare_image(photo)]))[0]
        assert e.photo is not None and e.classes[e.photo.own_choice] == bundle.classes[int(np.argmax(alone))]
        assert e.photo_disagrees == (int(np.argmax(alone)) != e.predicted)
        seen.add(e.photo_disagrees)
    assert seen == {True, False}  # both cases happen among the sample's photos
    assert not explain(bundle, POOL).photo_disagrees  # no photo: nothing to disagree


def test_words_are_the_fields_words_and_ngrams_map_to_the_words_they_cover(bundle: ModelBundle) -> None:
    title, description = "Jeu PS4 <b>FIFA</b> 19", "Le jeu de football &amp; FIFA  sur PlayStation"
    e = explain(bundle, title, description)
    assert e.title == "Jeu PS4 FIFA 19" and e.description == "Le jeu de football & FIFA sur PlayStation"
    fields = {"title": e.title, "description": e.description, "separator": " . "}
    assert [w.text for w in e.words if w.field == "title"] == ["Jeu", "PS4", "FIFA", "19"]
    for w in e.words:
        assert fields[w.field][w.start : w.end] == w.text
    for g in e.ngrams:
        covered = [e.words[i].text.lower() for i in g.words]
        if g.kind == "char":  # held by these words, in order: across the space between them if several
            assert covered and g.ngram.strip() in " ".join(covered)
        else:
            assert all(part in " ".join(covered) for part in g.ngram.split())
    fifa = [w for w in e.words if w.text == "FIFA"]
    assert len(fifa) == 2 and fifa[0].to_predicted == pytest.approx(fifa[1].to_predicted, rel=0.2)
    bigrams = {g.ngram: [e.words[i].text for i in g.words] for g in e.ngrams if g.kind == "word"}
    assert bigrams["sur playstation"] == ["sur", "PlayStation"]  # a bigram belongs to both its words


@pytest.mark.parametrize("analyzer", ["char", "char_wb"])
def test_character_ngrams_are_those_the_model_counts_each_on_the_words_it_holds(
    sample_dataset, analyzer: str
) -> None:  # type: ignore[no-untyped-def]
    """The explanation's character n-grams of a text are exactly the analyzer's (as many of each), for the
    n-grams across spaces of the ``char`` option and the within-word ones of the default, and each is placed
    on the words whose characters it holds."""
    texts = [clean_text(t[:300]) for t in sample_dataset.products["text"].tolist()[:150]]  # as the model's
    vec = TfidfFeatures(TfidfConfig(char_analyzer=analyzer, char_ngrams=(1, 5))).fit(texts).char
    assert vec is not None
    analyze = vec.build_analyzer()
    spanning = 0
    for text in texts:
        words = text.split()
        grams = list(_char_grams(vec, words))
        assert Counter(g for g, _ in grams) == Counter(analyze(text))
        for gram, owners in grams:
            assert owners == tuple(range(owners[0], owners[0] + len(owners)))  # neighbours, in order
            joined = " ".join(words[i].lower() for i in owners)
            assert gram.strip() in joined
            spanning += len(owners) > 1
    assert (spanning > 0) == (analyzer == "char")


def test_highlights_cover_the_text_and_mark_the_decisive_words(bundle: ModelBundle) -> None:
    e = explain(bundle, "Fifa 18 [Jeu PS4] PlayStation 4", "<script>alert('x')</script> Jeu de foot")
    pieces = highlight(e)
    assert "".join(p.text for p in pieces["title"]) == e.title
    assert "".join(p.text for p in pieces["description"]) == e.description == "alert('x') Jeu de foot"
    marked = [p for p in pieces["title"] + pieces["description"] if p.level]
    assert marked and all(p.direction in (1, -1) and 1 <= p.level <= 3 for p in marked)
    strongest = max(marked, key=lambda p: abs(p.margin))
    assert strongest.level == 3
    assert strongest.text == max((w for w in e.words), key=lambda w: abs(w.margin)).text
