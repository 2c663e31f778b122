"""The body of ``GET /api/v1/predictions/{id}/explanation``: why the model said so."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prodtype.catalog import Catalog
from prodtype.ml.explain import Explanation, highlight
from prodtype.serving.explanations import ExplanationView

TOP_WORDS = 5
TOP_NGRAMS = 20


class TypeScorePublic(BaseModel):
    prdtypecode: int
    category: str
    probability: float = Field(description="The explaining model's fused probability of this type")


class TypeRefPublic(BaseModel):
    prdtypecode: int
    category: str


class BranchPublic(BaseModel):
    name: str = Field(description="text (TF-IDF SVM), embedding (sentence and word vectors), image (photo)")
    weight: float = Field(description="The branch's fusion weight for products with (or without) a photo")
    score_predicted: float = Field(description="The branch's own score of the predicted type")
    score_runner_up: float = Field(description="The branch's own score of the runner-up")
    contribution: float = Field(
        description="weight x (score_predicted - score_runner_up): the branch's share of log_odds"
    )
    points_to: TypeRefPublic | None = Field(
        description="The type this branch alone scores highest (null for the photo branch without a photo)"
    )


class WordPublic(BaseModel):
    text: str
    field: Literal["title", "description", "separator"]
    start: int = Field(description="Offset in the cleaned field (title or description below)")
    end: int
    to_predicted: float = Field(description="What the word's n-grams add to the predicted type's logit")
    to_runner_up: float = Field(description="What they add to the runner-up's logit")
    contribution: float = Field(description="to_predicted - to_runner_up (> 0: toward the predicted type)")


class NgramPublic(BaseModel):
    ngram: str
    kind: Literal["word", "char"]
    tfidf: float
    to_predicted: float
    to_runner_up: float
    contribution: float
    words: list[int] = Field(description="Indices into `words` of the words it was cut from")


class PiecePublic(BaseModel):
    text: str
    toward: Literal["predicted", "runner_up"] | None = Field(
        description="For a decisive word: the type it pushes toward; null for plain text"
    )
    level: int = Field(description="0 plain text, 1-3 a decisive word (3 the strongest)")


class PhotoPublic(BaseModel):
    used: bool = Field(description="Whether the explaining model read a photo")
    disagrees: bool = Field(description="The photo branch alone points to another type than the prediction")
    points_to: TypeRefPublic | None


class ExplanationPublic(BaseModel):
    prediction_id: int
    prediction_model_version: str = Field(description="The model that made the stored prediction")
    model_version: str = Field(description="The model that explains it: the one served now")
    same_model: bool
    notes: list[str] = Field(description="What to know about this explanation (another model, no photo…)")
    predicted: TypeScorePublic
    runner_up: TypeScorePublic
    log_odds: float = Field(
        description="Fused logit of the predicted type minus the runner-up's: sum of the branches' "
        "contributions plus bias"
    )
    bias: float = Field(description="The fusion's class bias of the predicted type minus the runner-up's")
    branches: list[BranchPublic]
    photo: PhotoPublic
    text_intercept: float = Field(
        description="The text head's intercept difference (weighted): the text branch's contribution is "
        "this plus the sum of the contributions of all n-grams"
    )
    words: list[WordPublic] = Field(description="Every word of the title and description, in order")
    toward_predicted: list[int] = Field(
        description="Indices into `words`: the decisive words, strongest first"
    )
    toward_runner_up: list[int] = Field(description="Indices into `words`: the words for the runner-up")
    ngrams: list[NgramPublic] = Field(description=f"The {TOP_NGRAMS} n-grams with the largest |contribution|")
    title: list[PiecePublic] = Field(description="The cleaned title cut into plain text and decisive words")
    description: list[PiecePublic]

    @classmethod
    def from_view(cls, view: ExplanationView, catalog: Catalog) -> ExplanationPublic:
        e = view.explanation

        def ref(index: int) -> TypeRefPublic:
            code = e.classes[index]
            return TypeRefPublic(prdtypecode=code, category=catalog.name(code))

        def score(index: int) -> TypeScorePublic:
            return TypeScorePublic(**ref(index).model_dump(), probability=e.proba[index])

        photo = e.photo
        return cls(
            prediction_id=view.prediction_id,
            prediction_model_version=view.prediction_model_version,
            model_version=view.model_version,
            same_model=view.same_model,
            notes=list(view.notes),
            predicted=score(e.predicted),
            runner_up=score(e.runner_up),
            log_odds=e.log_odds,
            bias=e.bias,
            branches=[
                BranchPublic(
                    name=b.name,
                    weight=b.weight,
                    score_predicted=b.score_predicted,
                    score_runner_up=b.score_runner_up,
                    contribution=b.contribution,
                    points_to=ref(b.own_choice) if b.name != "image" or e.has_image else None,
                )
                for b in e.branches
            ],
            photo=PhotoPublic(
                used=photo is not None,
                disagrees=e.photo_disagrees,
                points_to=ref(photo.own_choice) if photo is not None else None,
            ),
            text_intercept=e.text_intercepts[0] - e.text_intercepts[1],
            words=[
                WordPublic(
                    text=w.text,
                    field=w.field,
                    start=w.start,
                    end=w.end,
                    to_predicted=w.to_predicted,
                    to_runner_up=w.to_runner_up,
                    contribution=w.margin,
                )
                for w in e.words
            ],
            toward_predicted=e.top_words(TOP_WORDS, "predicted"),
            toward_runner_up=e.top_words(TOP_WORDS, "runner_up"),
            ngrams=[
                NgramPublic(
                    ngram=g.ngram,
                    kind=g.kind,
                    tfidf=g.value,
                    to_predicted=g.to_predicted,
                    to_runner_up=g.to_runner_up,
                    contribution=g.margin,
                    words=list(g.words),
                )
                for g in e.ngrams[:TOP_NGRAMS]
            ],
            **_pieces(e),
        )


def _pieces(e: Explanation) -> dict[str, list[PiecePublic]]:
    sides: dict[int, Literal["predicted", "runner_up"]] = {1: "predicted", -1: "runner_up"}
    return {
        name: [PiecePublic(text=p.text, toward=sides.get(p.direction), level=p.level) for p in pieces]
        for name, pieces in highlight(e).items()
    }
