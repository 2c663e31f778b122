"""Screenshots of every page for the README: a real server with a small trained model and demo data, driven
by Debian's chromium through Playwright, one PNG per page under ``docs/screenshots/``.

What it does, all through the real code paths:

1. writes a small data folder (``--products`` products of the challenge sample, a stratified draw; the
   photos are the sample's) and starts ``prodtype run`` on it with a fresh SQLite database and storage
   folder: the first model is trained on it and registered as the champion (version 1);
2. creates the accounts through the API (a reviewer, two customers, one of them disabled), submits
   ``--submit`` unseen products of the sample as a customer through the API (a third with their photo),
   and reviews two thirds of them as the reviewer with their true type (accepted, or corrected); the
   demo records' times are then spread over the last week in the database (half of them; the other half
   stays today's, after the first model), so that the daily charts show more than one day;
3. in the browser: a bulk job (a CSV of 12 products, one of them bad) on the bulk page, a retrain started
   from the retraining page (a second version, trained on the sample plus the reviews), and a screenshot of
   each page as the role it is for, in English, at 1280x800.

Each PNG is reduced to a palette of 256 colours (Pillow) to stay small (the README's images are < 200 kB).

    python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "screenshots-password-1"
API = "/api/v1"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
MAX_BYTES = 200_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stratified(labels: pd.Series, n: int, seed: int) -> list[int]:
    """About ``n`` products with every class in its share (at least 2 of each)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for _, members in labels.groupby(labels):
        k = max(2, round(n * len(members) / len(labels)))
        chosen += [
            int(i) for i in rng.choice(members.index.to_numpy(), size=min(k, len(members)), replace=False)
        ]
    return sorted(chosen)


def write_data(sample: Path, folder: Path, products: int, seed: int) -> pd.DataFrame:
    """The small data folder for the server; returns the sample's other products (unseen by the model)."""
    x = pd.read_csv(sample / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(sample / "Y_train.csv", index_col=0)
    chosen = stratified(y["prdtypecode"], products, seed)
    folder.mkdir(parents=True)
    x.loc[chosen].to_csv(folder / "X_train.csv")
    y.loc[chosen].to_csv(folder / "Y_train.csv")
    (folder / "image_train").symlink_to((sample / "image_train").resolve())
    unseen = x.drop(index=chosen).copy()
    unseen["label"] = y.loc[unseen.index, "prdtypecode"]
    unseen["photo"] = [
        sample / "image_train" / f"image_{i}_product_{p}.jpg"
        for i, p in zip(unseen.imageid, unseen.productid, strict=True)
    ]
    return unseen


@contextmanager
def server(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-c", "from prodtype.cli import app; app()", "run", "--port", str(port)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")} | env
    # The child processes (the retrain job) import this checkout's prodtype too.
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=env["PRODTYPE_STORAGE_DIR"]
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def healthy() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
                try:
                    return httpx.get(f"{url}{API}/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(healthy, 900, "the server (it trains the first model)", every=1.0)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


class Api:
    def __init__(self, url: str, username: str, password: str = PASSWORD) -> None:
        self.client = httpx.Client(base_url=url + API, timeout=120)
        token = self.client.post("/auth/token", data={"username": username, "password": password})
        token.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.client.post(path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


def demo_data(url: str, unseen: pd.DataFrame, count: int, database_url: str, seed: int) -> int:
    """Accounts, predictions and reviews through the API; returns a reviewed prediction's id."""
    admin = Api(url, "admin")
    for name, role in (("rita", "reviewer"), ("carl", "customer"), ("cora", "customer"), ("max", "customer")):
        admin.post("/users", json={"username": name, "password": PASSWORD, "role": role})
    admin.client.patch("/users/max", json={"disabled": True}).raise_for_status()
    carl, rita = Api(url, "carl"), Api(url, "rita")
    rng = np.random.default_rng(seed)
    with_photo = unseen[[p.is_file() for p in unseen.photo]]
    without = unseen[[not p.is_file() for p in unseen.photo]]
    picks = pd.concat(
        [
            with_photo.sample(count // 3, random_state=seed),
            without.sample(count - count // 3, random_state=seed),
        ]
    ).sample(frac=1.0, random_state=seed)
    ids: list[tuple[int, int, int]] = []  # prediction id, predicted type, true type
    for row in picks.itertuples():
        files = (
            {"image": ("photo.jpg", row.photo.read_bytes(), "image/jpeg")} if row.photo.is_file() else None
        )
        data = {"designation": row.designation, "description": row.description}
        answer = carl.post("/predictions", data=data, files=files)
        ids.append((answer["id"], answer["prdtypecode"], int(row.label)))
    reviewed = ids[: 2 * len(ids) // 3]
    for pid, predicted, truth in reviewed:
        body: dict[str, Any] = {"decision": "accept"}
        if predicted != truth:
            body["prdtypecode"] = truth
        rita.post(f"/predictions/{pid}/review", json=body)
    # Spread half of the demo over the last week (the records were all made a minute ago).
    from sqlalchemy import update

    from prodtype.db.engine import make_engine
    from prodtype.db.tables import Prediction

    now = datetime.now(UTC)
    engine = make_engine(database_url)
    with engine.begin() as db:
        for pid, _, _ in ids[1::2]:  # half of them: the other half, today's, is after the first model
            created = now - timedelta(days=int(rng.integers(1, 7)), minutes=int(rng.integers(0, 600)))
            db.execute(update(Prediction).where(Prediction.id == pid).values(created_at=created))
            db.execute(
                update(Prediction)
                .where(Prediction.id == pid, Prediction.reviewed_at.is_not(None))
                .values(reviewed_at=created + timedelta(minutes=30))
            )
    engine.dispose()
    right = [pid for pid, predicted, truth in reviewed if predicted == truth]
    return right[0] if right else reviewed[0][0]


def bulk_csv(unseen: pd.DataFrame, seed: int) -> bytes:
    rows = unseen.sample(11, random_state=seed + 1)[["designation", "description", "productid", "imageid"]]
    out = io.StringIO()
    rows.to_csv(out)
    text = out.getvalue()
    return (text + "999999,,a row without a title,1,2\n").encode()


def save(page: Any, out: Path, name: str, full_page: bool = False) -> Path:
    """A screenshot reduced to 256 colours (a page is flat colours and text: it stays sharp), once the
    page's photos have loaded (thumbnails load lazily: those below the fold are scrolled to first)."""
    if full_page:
        for image in page.locator("img[loading=lazy]").all():
            image.scroll_into_view_if_needed()
        page.mouse.wheel(0, -100_000)
    page.wait_for_load_state("networkidle")
    raw = page.screenshot(full_page=full_page)
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    if full_page and image.height > 2 * VIEWPORT["height"]:
        image = image.crop((0, 0, image.width, 2 * VIEWPORT["height"]))
    path = out / f"{name}.png"
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )
    size = path.stat().st_size
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"{shown}: {image.width}x{image.height}, {size / 1000:.0f} kB")
    if size > MAX_BYTES:
        print(f"  warning: over {MAX_BYTES / 1000:.0f} kB")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "rakuten")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    parser.add_argument("--products", type=int, default=500, help="products the demo model is trained on")
    parser.add_argument("--submit", type=int, default=36, help="demo products submitted through the API")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    if not args.chromium.exists():
        sys.exit(f"no chromium at {args.chromium}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    work = args.work or Path(tempfile.mkdtemp(prefix="prodtype-screenshots-"))
    storage = work / "storage"
    storage.mkdir(parents=True)
    unseen = write_data(args.data, work / "data", args.products, args.seed)
    env = {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_DATABASE_URL": f"sqlite:///{storage / 'prodtype.db'}",
        "PRODTYPE_DATA_DIR": str(work / "data"),
        "PRODTYPE_ADMIN_PASSWORD": PASSWORD,
        "PRODTYPE_IMAGE_CACHE_DIR": str(REPO / ".cache" / "screenshots" / "image-features"),
        "PRODTYPE_CHAMPION_POLL_SECONDS": "2",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with server(env, work / "server.log") as url, sync_playwright() as playwright:
        print(f"server up at {url} after {time.perf_counter() - started:.0f} s (work folder {work})")
        explained = demo_data(url, unseen, args.submit, env["PRODTYPE_DATABASE_URL"], args.seed)
        browser = playwright.chromium.launch(executable_path=str(args.chromium), args=CHROMIUM_ARGS)

        def tab(username: str) -> Any:
            context = browser.new_context(base_url=url, viewport=VIEWPORT, locale="en-GB")
            context.set_default_timeout(120_000)
            page = context.new_page()
            page.goto("/login")
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.click("#login-form button[type=submit]")
            page.wait_for_load_state()
            return page

        anonymous = browser.new_context(base_url=url, viewport=VIEWPORT, locale="en-GB").new_page()
        anonymous.goto("/login")
        save(anonymous, args.out, "login")

        carl = tab("carl")
        carl.goto("/predict")
        carl.fill("#designation", "Piscine tubulaire ronde 3,66 x 0,76 m avec pompe de filtration")
        carl.fill("#description", "Structure acier, liner PVC, échelle fournie. Montage sans outils.")
        save(carl, args.out, "submit")
        carl.goto("/predictions")
        save(carl, args.out, "my-predictions")
        carl.goto("/bulk")
        carl.set_input_files(
            "#csv",
            files=[{"name": "products.csv", "mimeType": "text/csv", "buffer": bulk_csv(unseen, args.seed)}],
        )
        carl.click("#bulk-button")
        carl.wait_for_url("**/bulk/*")
        carl.locator('#bulk-job[data-status="done"]').wait_for()  # (the page's policy forbids eval)
        carl.reload()
        save(carl, args.out, "bulk-job", full_page=True)
        carl.goto("/bulk")
        save(carl, args.out, "bulk")

        rita = tab("rita")
        rita.goto(f"/predictions/{explained}")
        rita.locator("#explanation").wait_for()
        save(rita, args.out, "prediction", full_page=True)
        rita.goto("/review")
        rita.locator("div.why section.explanation").first.wait_for()
        save(rita, args.out, "review-queue")
        rita.goto("/monitoring?days=7")
        save(rita, args.out, "monitoring", full_page=True)

        admin = tab("admin")
        admin.goto("/accounts")
        save(admin, args.out, "accounts")
        admin.goto("/retrain")
        admin.on("dialog", lambda dialog: dialog.accept())
        admin.click("#retrain-button")
        admin.wait_for_url("**/retrain?job=*")
        admin.locator('#job-step:text-is("train")').wait_for()
        save(admin, args.out, "retrain")
        finished = '#running-job[data-status="succeeded"], #running-job[data-status="failed"]'
        admin.locator(finished).wait_for(timeout=900_000)
        admin.goto("/models")
        save(admin, args.out, "models", full_page=True)
        browser.close()
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
