"""The service follows the champion alias: checked bundles are swapped in, broken ones refused.

On real tiny bundles (loop/tiny.py): ``a`` predicts 2583 or 1560, ``b`` 1300 or 2060, ``c`` 2522 or 2280.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from loop.tiny import PAIRS, copy_bundle
from prodtype.config import LoopSettings, Settings
from prodtype.db.tables import User
from prodtype.loop.champion import ChampionFollower, RegisteredPredictor, smoke_check
from prodtype.loop.registry import Registry
from prodtype.ml.predictor import PredictorWrapper
from prodtype.serving import predictions
from prodtype.serving.explanations import explain_prediction
from prodtype.serving.model_holder import ModelHolder, load_model
from prodtype.serving.storage import LocalImageStore
from service_support.waiting import until

KNOWN = [*PAIRS["a"], *PAIRS["b"]]  # the product types this service knows (c's are not among them)


def register(registry: Registry, bundle: Path) -> int:
    return registry.log_and_register(bundle, run_name=bundle.name, params={}, metrics={}, tags={}).version


def broken_copy(bundle: Path, folder: Path) -> Path:
    """A copy whose text model was damaged after the manifest recorded its checksum."""
    copy = copy_bundle(bundle, folder)
    victim = max(
        (p for p in copy.rglob("*") if p.is_file() and p.name != "manifest.json"),
        key=lambda p: p.stat().st_size,
    )
    victim.write_bytes(victim.read_bytes()[:-16] + b"\0" * 16)
    return copy


def test_follows_promotions_and_refuses_a_broken_bundle(
    registry: Registry, loop_settings: LoopSettings, tmp_path: Path, tiny_bundles: dict[str, Path]
) -> None:
    configured = load_model(tiny_bundles["b"])
    holder = ModelHolder(configured)
    follower = ChampionFollower(holder, registry, loop_settings, known_codes=KNOWN)
    assert not follower.check_now()  # nothing registered: the configured model keeps serving
    assert holder.version == configured.version

    v1 = register(registry, tiny_bundles["a"])
    registry.promote(v1, reason="first")
    assert follower.check_now()
    assert holder.version == "prodtype/v1" and holder.get().predict("x").prdtypecode in PAIRS["a"]
    served = holder.get()
    assert (
        isinstance(served, RegisteredPredictor)
        and served.bundle_version == load_model(tiny_bundles["a"]).version
    )

    broken = register(registry, broken_copy(tiny_bundles["b"], tmp_path / "broken"))
    registry.promote(broken, reason="oops")
    assert not follower.check_now()
    assert holder.version == "prodtype/v1"  # the old model keeps serving
    assert "checksum" in follower.status()["refused"][str(broken)]

    unknown_codes = register(registry, tiny_bundles["c"])
    registry.promote(unknown_codes, reason="alien")
    assert not follower.check_now() and "not product types" in follower.refused[unknown_codes]

    registry.rollback()  # back to the broken one's predecessor in the history
    registry.rollback()
    assert registry.alias_version("champion") == v1
    assert not follower.check_now() and holder.version == "prodtype/v1"


def test_background_thread_swaps_while_requests_keep_being_answered(
    registry: Registry, loop_settings: LoopSettings, tiny_bundles: dict[str, Path]
) -> None:
    v1 = register(registry, tiny_bundles["a"])
    registry.promote(v1, reason="first")
    holder = ModelHolder()
    follower = ChampionFollower(holder, registry, loop_settings)
    follower.check_now()
    answers: list[list[int]] = [[], [], []]  # per client, in order
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(mine: list[int]) -> None:
        try:
            # A request every few milliseconds: clients that spin without a pause starve the follower
            # thread of the interpreter lock, and the swap then takes seconds instead of milliseconds.
            while not stop.wait(0.002):
                mine.append(holder.get().predict("x").prdtypecode)
        except BaseException as exc:  # an exception in a thread is only a warning to pytest: keep it
            errors.append(exc)

    def answered(codes: tuple[int, ...]) -> int:
        return sum(code in codes for mine in answers for code in mine)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in answers]
    for t in threads:
        t.start()
    follower.start()
    try:
        until(lambda: errors or answered(PAIRS["a"]) >= 30, 20, "the clients were not answered by v1")
        v2 = register(registry, tiny_bundles["b"])
        registry.promote(v2, reason="better")
        follower.wake()
        until(lambda: holder.version == "prodtype/v2", 20, lambda: f"still serving {holder.version}")
        until(lambda: errors or answered(PAIRS["b"]) >= 30, 20, "the clients were not answered by v2")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        follower.stop()
    assert not errors, errors
    assert holder.version == "prodtype/v2"
    for mine in answers:  # each client went from v1 to v2 once, and never back
        switch = next(i for i, code in enumerate(mine) if code in PAIRS["b"])
        assert switch > 0 and set(mine[:switch]) <= set(PAIRS["a"]) and set(mine[switch:]) <= set(PAIRS["b"])


def test_smoke_check_accepts_a_sane_predictor(tiny_bundles: dict[str, Path]) -> None:
    smoke_check(load_model(tiny_bundles["a"]), known_codes=KNOWN)


def test_the_followed_champion_explains_its_predictions(
    registry: Registry,
    loop_settings: LoopSettings,
    tiny_bundles: dict[str, Path],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    """What `prodtype run` serves (the registry's champion, wrapped as a registered version) explains a
    stored prediction like a bundle served directly: the explanation is the bundle's, the version the
    registry's."""
    registry.promote(register(registry, tiny_bundles["a"]), reason="first")
    holder = ModelHolder()
    assert ChampionFollower(holder, registry, loop_settings, known_codes=KNOWN).check_now()
    served = holder.get()
    store = LocalImageStore(settings.images_dir)
    with sessions() as session:
        carl = session.scalars(select(User).where(User.username == "carl")).one()
        submission = predictions.check_submission(
            predictions.Submission("Piscine tubulaire ronde avec pompe"), settings.upload_limit_bytes
        )
        row = predictions.create_prediction(session, store, served, submission, carl)
        view = explain_prediction(session, store, served, row.id, carl)
        # the batching and metrics wrappers of the service hold the registered version in turn
        wrapped = PredictorWrapper(PredictorWrapper(served))
        again = explain_prediction(session, store, wrapped, row.id, carl)
    assert view.same_model and view.model_version == "prodtype/v1"
    explained = view.explanation
    assert explained.classes[explained.predicted] == row.predicted_code and row.predicted_code in PAIRS["a"]
    assert again.explanation == view.explanation
