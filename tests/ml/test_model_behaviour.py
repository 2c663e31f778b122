"""Model tests on the session's ``trained_bundle``: minimum functionality on clear-cut products, invariance to
edits that do not change the product (HTML, entities, whitespace), direction on a decisive word, and the
shape of what a prediction answers (top-k, names, determinism, batch = one by one, images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prodtype.catalog import load_catalog
from prodtype.data.text import join_text
from prodtype.ml.bundle import ModelBundle, load_bundle
from prodtype.ml.predictor import Prediction, ProductInput

BOOKS = {10, 2403, 2705}  # used books, books/comics/magazines, new books
VIDEO_GAMES = {40, 2462}  # new and used video games

# Titles a person would classify without hesitation; each in a style the sample's labels use.
CLEAR_CUT = [
    ("Pompe de filtration pour piscine hors-sol 6 m3/h", "", {2583}),
    ("Bâche d'hivernage pour piscine ronde 4,60 m - Bleu", "", {2583}),
    ("Fifa 18 [Jeu PS4] PlayStation 4", "", VIDEO_GAMES),
    ("Farming Simulator 19 - Jeu En Téléchargement", "", {2905}),
    ("Manette sans fil Dualshock 4 pour Sony PlayStation 4 - Noir", "", {50}),
    ("Carte Pokémon Dracaufeu 4/102 Holo Rare Set de Base", "", {1160}),
    ("Taie d'oreiller coton 50x50 cm motif géométrique décoration canapé", "", {1920}),
    ("Collier réglable pour chien en nylon, taille M", "", {2220}),
    ("Stylo plume Pilot pointe moyenne encre bleue", "", {2522}),
    ("Tondeuse à gazon thermique autotractée 46 cm", "", {2585}),
    ("Le Petit Prince - Antoine de Saint-Exupéry", "Roman, édition de poche, 96 pages.", BOOKS),
]


@pytest.fixture(scope="module")
def bundle(trained_bundle: Path) -> ModelBundle:
    return load_bundle(trained_bundle)


@pytest.fixture(scope="module")
def pool_photo(sample_dataset) -> bytes:  # type: ignore[no-untyped-def]
    products = sample_dataset.products
    with_image = products[(products["label"] == 2583) & products["image_path"].notna()]
    return Path(with_image["image_path"].iloc[0]).read_bytes()


def codes(prediction: Prediction) -> list[int]:
    return [c.prdtypecode for c in prediction.top_k]


def probabilities(prediction: Prediction) -> np.ndarray:
    return np.array([c.probability for c in prediction.top_k])


# -- minimum functionality -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("designation", "description", "expected"), CLEAR_CUT, ids=[c[0][:30] for c in CLEAR_CUT]
)
def test_clear_cut_products(
    bundle: ModelBundle, designation: str, description: str, expected: set[int]
) -> None:
    prediction = bundle.predict(designation, description, k=2)
    assert set(codes(prediction)) & expected, (
        f"{designation!r}: top-2 {prediction.top_k}, expected {expected}"
    )


def test_most_clear_cut_products_are_right_at_top_1(bundle: ModelBundle) -> None:
    predictions = bundle.predict_many([ProductInput(d, s) for d, s, _ in CLEAR_CUT], k=1)
    right = [p.prdtypecode in expected for p, (_, _, expected) in zip(predictions, CLEAR_CUT, strict=True)]
    assert sum(right) >= len(CLEAR_CUT) - 1, [
        (c[0], p.prdtypecode) for c, p in zip(CLEAR_CUT, predictions, strict=True)
    ]


def test_a_decisive_word_moves_the_prediction(bundle: ModelBundle) -> None:
    """'pour piscine' makes a generic accessory a pool product; 'pour chien' makes it a pet product."""
    generic = bundle.predict("Brosse de nettoyage avec manche télescopique", k=27)
    pool = bundle.predict("Brosse de nettoyage pour piscine avec manche télescopique", k=27)
    dog = bundle.predict("Brosse de toilettage pour chien avec manche", k=27)

    def p(prediction: Prediction, code: int) -> float:
        return next(c.probability for c in prediction.top_k if c.prdtypecode == code)

    assert pool.prdtypecode == 2583
    assert p(pool, 2583) > p(generic, 2583)
    assert dog.prdtypecode == 2220
    assert p(dog, 2220) > p(generic, 2220)


# -- invariance -------------------------------------------------------------------------------------------

PLAIN = "Pompe de filtration 6 m3/h, idéale pour piscine hors-sol. Livrée avec tuyaux."
NOISY_VARIANTS = [
    f"<p>{PLAIN}</p>",
    "<div><p>Pompe de filtration 6 m3/h,<br/>id&eacute;ale pour <b>piscine</b> hors-sol.</p>"
    "<p>Livr&amp;eacute;e avec tuyaux.</p></div>",
    "  Pompe&nbsp;de   filtration\n6 m3/h,\tidéale pour piscine hors-sol.\r\nLivrée avec tuyaux.   ",
    '<span style="font-size: 11pt">Pompe de filtration 6 m3/h, id&#233;ale pour piscine hors-sol. '
    "Livr&#xe9;e avec tuyaux.</span>",
]


@pytest.mark.parametrize("noisy", NOISY_VARIANTS)
def test_html_entities_and_whitespace_change_nothing(bundle: ModelBundle, noisy: str) -> None:
    title = "Pompe Piscine Hors-Sol"
    assert join_text(title, noisy) == join_text(title, PLAIN)
    plain, edited = bundle.predict(title, PLAIN, k=27), bundle.predict(f"  <b>{title}</b> ", noisy, k=27)
    assert edited.prdtypecode == plain.prdtypecode
    assert codes(edited) == codes(plain)
    np.testing.assert_allclose(probabilities(edited), probabilities(plain), atol=1e-6)


# -- what a prediction answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 27])
def test_top_k_is_sorted_sums_to_at_most_one_and_is_named_from_the_catalogue(
    bundle: ModelBundle, k: int
) -> None:
    catalog = load_catalog()
    prediction = bundle.predict("Peluche Donald Disneyland 30 cm", k=k)
    probs = probabilities(prediction)
    assert len(prediction.top_k) == k
    assert np.all(np.diff(probs) <= 0)
    assert np.all(probs >= 0) and probs.sum() <= 1 + 1e-5
    if k == 27:
        assert probs.sum() == pytest.approx(1, abs=1e-4)
        assert sorted(codes(prediction)) == catalog.codes
    assert len(set(codes(prediction))) == k
    for candidate in prediction.top_k:
        assert candidate.category == catalog.name(candidate.prdtypecode)
    assert prediction.prdtypecode == prediction.top_k[0].prdtypecode
    assert prediction.category == prediction.top_k[0].category
    assert prediction.confidence == prediction.top_k[0].probability
    assert 0 < prediction.confidence <= 1


def test_an_image_sets_has_image_and_still_predicts(bundle: ModelBundle, pool_photo: bytes) -> None:
    clear = "Bâche d'hivernage pour piscine ronde"
    text_only, with_image = bundle.predict(clear, k=27), bundle.predict(clear, image=pool_photo, k=27)
    assert not text_only.has_image and with_image.has_image
    assert with_image.prdtypecode == 2583
    assert probabilities(with_image).sum() == pytest.approx(1, abs=1e-4)

    vague = "Lot de 2 accessoires, coloris bleu"  # the text says little: the pool photo decides more
    text_only, with_image = bundle.predict(vague, k=27), bundle.predict(vague, image=pool_photo, k=27)
    assert with_image.has_image and not text_only.has_image
    p_text = dict(zip(codes(text_only), probabilities(text_only), strict=True))
    p_image = dict(zip(codes(with_image), probabilities(with_image), strict=True))
    assert p_image[2583] > p_text[2583] + 0.01, (p_text[2583], p_image[2583])


def test_same_input_twice_gives_the_same_output(bundle: ModelBundle, pool_photo: bytes) -> None:
    first = bundle.predict("Figurine Pop Star Wars Dark Vador", "Vinyle, 10 cm", image=pool_photo)
    assert bundle.predict("Figurine Pop Star Wars Dark Vador", "Vinyle, 10 cm", image=pool_photo) == first
    again = load_bundle(bundle.path).predict(
        "Figurine Pop Star Wars Dark Vador", "Vinyle, 10 cm", image=pool_photo
    )
    assert again == first


def test_predict_many_equals_predict_one_by_one(bundle: ModelBundle, pool_photo: bytes) -> None:
    products = [
        ProductInput("Pompe piscine", "", pool_photo),
        ProductInput("Fifa 18 [Jeu PS4]"),
        ProductInput("Taie d'oreiller", "<p>coton 50x50</p>"),
        ProductInput("Carte Pokémon Pikachu", "", pool_photo),
        ProductInput("Le Petit Prince", "Roman"),
    ]
    together = bundle.predict_many(products, k=5)
    assert len(together) == len(products)
    for product, batched in zip(products, together, strict=True):
        alone = bundle.predict(product.designation, product.description, product.image, k=5)
        assert batched.prdtypecode == alone.prdtypecode
        assert batched.has_image == alone.has_image == (product.image is not None)
        assert codes(batched) == codes(alone)
        np.testing.assert_allclose(probabilities(batched), probabilities(alone), atol=2e-6)


def test_predict_many_of_nothing_is_nothing(bundle: ModelBundle) -> None:
    assert bundle.predict_many([]) == []


@pytest.mark.parametrize("title", ["", "   ", "<br/>", "&nbsp;"])
def test_an_empty_designation_is_refused(bundle: ModelBundle, title: str) -> None:
    with pytest.raises(ValueError, match="designation is empty"):
        bundle.predict(title, "a description alone is not a product")
    with pytest.raises(ValueError, match="product 1: the designation is empty"):
        bundle.predict_many([ProductInput("Pompe piscine"), ProductInput(title)])
