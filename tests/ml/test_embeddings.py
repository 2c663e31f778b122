"""The sentence embedders: the title vector beside the text vector (``use-q8+title``), on the real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from prodtype.data.text import join_text
from prodtype.ml.embeddings import EMBEDDERS, encode_cached, get_embedder, title_of
from service_support.columns import assert_side_by_side


@pytest.mark.parametrize(
    ("designation", "description", "title"),
    [
        ("Piscine tubulaire ronde", "Structure en acier. Bâche &amp; pompe", "Piscine tubulaire ronde"),
        ("Livre ancien", "", "Livre ancien"),
        ("Livre ancien", "Livre ancien", "Livre ancien"),  # a description equal to the title is dropped
        ("", "Une description sans titre", ""),
    ],
)
def test_title_of_inverts_join_text(designation: str, description: str, title: str) -> None:
    assert title_of(join_text(designation, description)) == title


def test_titled_embedder_puts_the_title_vector_beside_the_text_vector() -> None:
    titled, inner = get_embedder("use-q8+title"), get_embedder("use-q8")
    assert "use-q8+title" in EMBEDDERS and titled.name == "use-q8+title" and titled.dim == 2 * inner.dim
    texts = [
        join_text("Piscine tubulaire ronde", "Une piscine hors-sol de 3,66 m avec pompe de filtration"),
        join_text("Figurine Star Wars", ""),
        "",
    ]
    vectors = titled.encode(texts)
    assert vectors.shape == (3, 1024)
    assert_side_by_side(vectors, [(inner, texts), (inner, [title_of(t) for t in texts])], atol=1e-5)
    # a product with a description: the two halves differ; without one they are the same text
    assert not np.allclose(vectors[0, :512], vectors[0, 512:], atol=1e-3)
    np.testing.assert_allclose(vectors[1, :512], vectors[1, 512:], atol=1e-5)
    assert titled.encode([]).shape == (0, 1024)


def test_the_title_is_taken_from_the_clipped_text_which_keys_the_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Texts with the same first ``max_chars`` characters share a cache entry, so they must get the same
    vector: the title is cut from the clipped text, even when the cut falls inside the title."""
    titled = get_embedder("use-q8+title", None, 20)
    a = "Lampe de bureau LE . noire"  # the " . " after the title straddles the 20th character
    b = "Lampe de bureau LE .x autre"  # no " . ": all of it is the title
    assert a[:20] == b[:20] and title_of(a) != title_of(b)[:20]
    direct = titled.encode([a, b])
    np.testing.assert_allclose(direct[0], direct[1], atol=1e-6)
    cached = encode_cached(titled, [a], tmp_path)
    np.testing.assert_allclose(encode_cached(titled, [b], tmp_path), cached, atol=1e-6)  # read back
    np.testing.assert_allclose(cached, direct[:1], atol=1e-5)


def test_an_unknown_titled_embedder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown text embedder 'use\\+title'"):
        get_embedder("use+title")
