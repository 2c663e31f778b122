"""Streaming predictions over a challenge-format X file, written in the submission format."""

from __future__ import annotations

import csv
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from prodtype.data.challenge import DataError, image_filename, iter_products
from prodtype.ml.bundle import ModelBundle


def predict_file(
    bundle: ModelBundle,
    x_path: Path,
    images_dir: Path | None,
    out_path: Path,
    *,
    chunksize: int = 512,
    image_cache_dir: Path | None = None,
    progress: bool = True,
) -> int:
    """Write ``,prdtypecode`` (official index, then the code) for every row of ``x_path``; returns the count.

    The file is read and predicted in chunks, so memory stays flat on the full test set; the output is
    written to a temporary file and moved into place at the end, never left half-written.
    """
    if images_dir is not None and not Path(images_dir).is_dir():
        raise DataError(f"image folder {images_dir} does not exist")
    present = {e.name for e in os.scandir(images_dir)} if images_dir is not None else set()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    classes = np.asarray(bundle.classes)
    count = 0
    bar: tqdm[Any] | None = None  # started once the first chunk is valid: a bad file prints only its error
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh, ThreadPoolExecutor(1) as pool:
            writer = csv.writer(fh)
            writer.writerow(["", "prdtypecode"])
            for chunk in iter_products(Path(x_path), chunksize):
                if bar is None:
                    bar = tqdm(desc="predicting", unit="product", disable=not progress)
                paths: list[str | None] = []
                for imageid, productid in zip(chunk["imageid"], chunk["productid"], strict=True):
                    name = image_filename(int(imageid), int(productid))
                    paths.append(
                        str(Path(images_dir) / name) if images_dir is not None and name in present else None
                    )
                # the text branches (mostly Python, holding the GIL) run while the photos are decoded and
                # encoded (Pillow and onnxruntime release it): the two halves overlap on two cores
                text = pool.submit(bundle.text_branches, chunk["text"].tolist())
                feats, has_image, _ = bundle.encoder.encode_files(paths, image_cache_dir)
                proba = bundle.fuse(text.result(), feats, has_image)
                for index, code in zip(chunk.index, classes[proba.argmax(axis=1)], strict=True):
                    writer.writerow([index, int(code)])
                count += len(chunk)
                bar.update(len(chunk))
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return count
