"""Code tests of text cleaning: entities (double-encoded too), tags, line breaks, whitespace, missing data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prodtype.data.text import clean_text, join_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Luc a des id&eacute;es de grandeur", "Luc a des idées de grandeur"),
        ("l&#39;eau caf&#233; &#x00E9;t&#xE9;", "l'eau café été"),
        ("Fish &amp; Chips", "Fish & Chips"),
        ("&amp;eacute;t&amp;eacute;", "été"),  # double-encoded by the seller's tool
        ("&amp;lt;b&amp;gt;gras&amp;lt;/b&amp;gt;", "gras"),  # double-encoded tags are tags too
        ("5 &lt; 6", "5 < 6"),
        ("prix&nbsp;:&nbsp;10&nbsp;€", "prix : 10 €"),
    ],
)
def test_html_entities_are_decoded(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<b>Piscine</b> hors-sol", "Piscine hors-sol"),
        ('<p class="x">Bâche</p><p>hiver</p>', "Bâche hiver"),
        ("<div><ul><li>un</li><li>deux</li></ul></div>", "un deux"),
        ("a<b>b</b>c", "a b c"),
        ('<span style="color:red">rouge</span>', "rouge"),
        ("<!-- commentaire -->texte", "texte"),
        ("&lt;p&gt;encodé&lt;/p&gt;", "encodé"),
        ("3 < 5 et 6 > 4", "3 < 5 et 6 > 4"),  # comparisons are text, not tags
        ("taille <3 ans> 10", "taille <3 ans> 10"),
    ],
)
def test_tags_are_removed(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize("br", ["<br>", "<br/>", "<br />", "<BR>", "< br >", "</p><p>", "<br>\n<br>"])
def test_line_breaks_become_one_space(br: str) -> None:
    assert clean_text(f"ligne un{br}ligne deux") == "ligne un ligne deux"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Jeu   PS4  ", "Jeu PS4"),
        ("a\tb\nc\r\nd", "a b c d"),
        ("a\u00a0b", "a b"),
        ("\n\t ", ""),
    ],
)
def test_whitespace_is_collapsed_and_stripped(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize("missing", [None, math.nan, float("nan"), pd.NA, "", "<br>", "&nbsp;"])
def test_missing_or_blank_values_are_empty(missing: object) -> None:
    assert clean_text(missing) == ""


def test_non_strings_are_converted() -> None:
    assert clean_text(2583) == "2583"


def test_clean_text_is_idempotent() -> None:
    raw = "<p>Bouée&nbsp;gonflable &amp;eacute;t&amp;eacute;<br/>  pour   piscine</p>"
    once = clean_text(raw)
    assert clean_text(once) == once == "Bouée gonflable été pour piscine"


@pytest.mark.parametrize(
    ("designation", "description", "joined"),
    [
        ("Pompe Piscine", "Débit 6 m3/h", "Pompe Piscine . Débit 6 m3/h"),
        ("Pompe Piscine", "<p>Débit&nbsp;6 m3/h<br></p>", "Pompe Piscine . Débit 6 m3/h"),
        ("<b>Pompe</b>  Piscine", None, "Pompe Piscine"),
        ("Pompe Piscine", math.nan, "Pompe Piscine"),
        ("Pompe Piscine", "", "Pompe Piscine"),
        ("Pompe Piscine", "<br />", "Pompe Piscine"),
        ("Pompe Piscine", "<p>Pompe   Piscine</p>", "Pompe Piscine"),  # a description that repeats the title
    ],
)
def test_join_designation_and_description(designation: object, description: object, joined: str) -> None:
    assert join_text(designation, description) == joined
