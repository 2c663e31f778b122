"""The fused multimodal model: TF-IDF text branch + sentence-embedding branch + image branch, stacked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodtype.ml.embeddings import TextEmbedder
from prodtype.ml.fusion import Fusion, stack_branches
from prodtype.ml.heads import LinearHead
from prodtype.ml.text import TfidfFeatures


@dataclass
class BranchOutputs:
    text_scores: np.ndarray
    embed_logp: np.ndarray | None
    image_logp: np.ndarray
    has_image: np.ndarray


@dataclass
class FusedModel:
    classes: np.ndarray
    tfidf: TfidfFeatures
    text_head: LinearHead
    embed_head: LinearHead | None
    image_head: LinearHead
    fusion: Fusion

    def branches(
        self,
        texts: list[str],
        embeddings: np.ndarray | None,
        image_features: np.ndarray,
        has_image: np.ndarray,
    ) -> BranchOutputs:
        text_scores, embed_logp = self.text_branches(texts, embeddings)
        return BranchOutputs(text_scores, embed_logp, self.image_branch(image_features, has_image), has_image)

    def text_branches(
        self, texts: list[str], embeddings: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The TF-IDF head's scores and the sentence-embedding head's log-probabilities."""
        text_scores = self.text_head.scores(self.tfidf.transform(texts))
        if self.embed_head is None:
            return text_scores, None
        if embeddings is None:
            raise ValueError("this model needs sentence embeddings of its texts")
        return text_scores, self.embed_head.log_proba(embeddings)

    def image_branch(self, image_features: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        """The image head's log-probabilities (zero rows for products without a photo)."""
        image_logp = np.zeros((len(has_image), len(self.classes)))
        if has_image.any():
            image_logp[has_image] = self.image_head.log_proba(image_features[has_image])
        return image_logp

    def predict_proba(
        self,
        texts: list[str],
        embeddings: np.ndarray | None,
        image_features: np.ndarray,
        has_image: np.ndarray,
    ) -> np.ndarray:
        return self.fuse(self.branches(texts, embeddings, image_features, has_image), has_image)

    def fuse(self, b: BranchOutputs, has_image: np.ndarray) -> np.ndarray:
        """Fused probabilities; ``has_image`` False everywhere gives the text-only model's answer."""
        return self.fusion.proba(
            stack_branches(b.text_scores, b.embed_logp, b.image_logp, has_image), has_image
        )


def embed(embedder: TextEmbedder | None, texts: list[str], progress: bool = False) -> np.ndarray | None:
    return None if embedder is None else embedder.encode(texts, progress=progress)
