"""The text printed in the photos as photo features: Tesseract OCR beside the photo head.

Book covers, magazines and game boxes print words the encoder cannot read (an author, "PlayStation", "jeu
officiel"). This benchmark reads every photo of the sample with Tesseract (Debian's ``tesseract-ocr`` with
``tesseract-ocr-fra``, French and English models, the photo enlarged twice with Lanczos, one thread per
process, two processes; the text is cached in ``CACHE_DIR/ocr.json``), then scores on the benchmark's folds
(seeds 0 and 1), on the held-out products that have a photo:

- the model's photo head (the served int8 encoder with the model's decoding, logistic regression C=0.02),
  trained on the other folds' photos plus the image-only photos (the reference);
- the OCR text alone: TF-IDF of character 3-5-grams (within words, sublinear, min_df=2) and a logistic
  regression (C=5), trained on the training photos with any text; a photo without text gets uniform scores;
- both, their log-probabilities summed (settings fixed beforehand).

Δ is paired per fold against the photo head. Needs ``apt-get install tesseract-ocr tesseract-ocr-fra``.

    python benchmarks/bench_photo_ocr.py [--seeds 0 1] [--cache-dir .cache/bench-features] [--out FILE]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from sample_folds import (
    ROOT,
    Clock,
    fold_parser,
    load_sample,
    score_rows,
    table,
    weighted_f1,
    write_table,
)
from scipy.special import log_softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from prodtype.data.challenge import image_paths
from prodtype.ml.heads import fit_logistic
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, _folds


def read_text(path: str) -> str:
    """The words Tesseract reads in the photo at ``path``, enlarged twice, whitespace collapsed."""
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * 2, img.height * 2), Image.Resampling.LANCZOS)
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        img.save(tmp.name)
        out = subprocess.run(
            ["tesseract", tmp.name, "-", "-l", "fra+eng"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        ).stdout
    return " ".join(out.split())


def ocr_all(paths: list[str], cache: Path) -> tuple[dict[str, str], float]:
    """Every photo's text by file name, from ``cache`` where it has them; seconds spent reading the rest."""
    known: dict[str, str] = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [p for p in paths if Path(p).name not in known]
    clock = Clock()
    if todo:
        with ProcessPoolExecutor(2) as pool:
            for p, words in zip(todo, pool.map(read_text, todo, chunksize=8), strict=True):
                known[Path(p).name] = words
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    return known, clock.elapsed()


def main() -> None:
    args = fold_parser(__doc__, ROOT / "results" / "photo_ocr.md").parse_args()
    if shutil.which("tesseract") is None:
        sys.exit("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-fra")
    ds = load_sample(args.data)
    y = ds.products["label"].to_numpy(dtype=np.int64)
    labels = np.concatenate([y, ds.image_only["label"].to_numpy(dtype=np.int64)])
    classes, n = np.unique(labels), len(y)
    paths = image_paths(ds.products) + image_paths(ds.image_only)
    clock = Clock()
    feats, has, _ = ImageEncoder(name="lite0-int8").encode_files(
        paths, args.cache_dir / "image", progress=False
    )
    found = [p for p in paths if p]
    ocr, took = ocr_all(found, args.cache_dir / "ocr.json")
    text = [ocr[Path(p).name] if p else "" for p in paths]
    with_text = sum(bool(t) for t in text)
    print(f"{with_text} of {len(found)} photos with text; OCR {took:.0f} s for those not cached", flush=True)
    io_rows = np.arange(n, len(paths))[has[n:]]
    head_name, ocr_name, both_name = "photo head (reference)", "OCR text alone", "photo head + OCR text"
    scores: dict[str, list[float]] = {head_name: [], ocr_name: [], both_name: []}
    for seed in args.seeds:
        for tr, te in _folds(y, 5, seed):
            tr, te = np.concatenate([tr[has[tr]], io_rows]), te[has[te]]
            head = fit_logistic(feats[tr], labels[tr], classes, TrainConfig().image_c, seed)
            photo = log_softmax(head.scores(feats[te]), axis=1)
            words = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)
            x_tr = words.fit_transform([text[i] for i in tr])
            x_te = words.transform([text[i] for i in te])
            keep = np.array([bool(text[i]) for i in tr])
            got = np.array([bool(text[i]) for i in te])
            reader = LogisticRegression(C=5.0, max_iter=2000).fit(x_tr[keep], labels[tr][keep])
            read = np.full((len(te), len(classes)), -np.log(len(classes)))
            cols = np.searchsorted(classes, reader.classes_)
            read[np.ix_(got, cols)] = np.log(np.clip(reader.predict_proba(x_te[got]), 1e-9, 1))
            read[got] = log_softmax(read[got], axis=1)
            for name, s in ((head_name, photo), (ocr_name, read), (both_name, photo + read)):
                scores[name].append(weighted_f1(y[te], classes[s.argmax(1)]))
    ref = scores[head_name]
    title = (
        f"Photo branch alone with the photos' OCR text, products with a photo ({int(has[:n].sum())}), "
        f"+{len(io_rows)} image-only photos in training; {with_text} of {len(found)} photos with any text "
        f"(OCR {took:.0f} s with 2 processes for the photos not cached); fold seeds {args.seeds}, "
        f"{len(ref)} folds; {clock.stamp()}"
    )
    columns = ["photo features", "weighted F1 (mean ± sd)", "Δ vs the photo head, paired (mean ± se)"]
    write_table(table(title, columns, score_rows(scores, ref)), args.out)


if __name__ == "__main__":
    main()
