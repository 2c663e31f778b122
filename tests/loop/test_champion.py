"""The service follows the champion alias: checked bundles are swapped in, broken ones refused."""

from __future__ import annotations

import threading
from pathlib import Path

from loop.fakes import load_fake, write_bundle
from prodtype.config import LoopSettings
from prodtype.loop.champion import ChampionFollower, RegisteredPredictor, smoke_check
from prodtype.loop.registry import Registry
from prodtype.serving.model_holder import ModelHolder
from service_support.waiting import until


def register(registry: Registry, folder: Path, **manifest: object) -> int:
    bundle = write_bundle(folder, **manifest)
    return registry.log_and_register(bundle, run_name=folder.name, params={}, metrics={}, tags={}).version


def test_follows_promotions_and_refuses_a_broken_bundle(
    registry: Registry, loop_settings: LoopSettings, tmp_path: Path
) -> None:
    holder = ModelHolder(load_fake(write_bundle(tmp_path / "configured", code=10)))
    follower = ChampionFollower(
        holder, registry, loop_settings, known_codes=[10, 2583, 2705], loader=load_fake
    )
    assert not follower.check_now()  # nothing registered: the configured model keeps serving
    assert holder.version == "configured"

    v1 = register(registry, tmp_path / "v1", code=2583)
    registry.promote(v1, reason="first")
    assert follower.check_now()
    assert holder.version == "prodtype/v1" and holder.get().predict("x").prdtypecode == 2583
    served = holder.get()
    assert isinstance(served, RegisteredPredictor) and served.bundle_version == "v1"

    broken = register(registry, tmp_path / "broken", code=2583, broken=True)
    registry.promote(broken, reason="oops")
    assert not follower.check_now()
    assert holder.version == "prodtype/v1"  # the old model keeps serving
    assert "broken" in follower.status()["refused"][str(broken)]

    unknown_codes = register(registry, tmp_path / "alien", classes=[99999], code=99999)
    registry.promote(unknown_codes, reason="alien")
    assert not follower.check_now() and "not product types" in follower.refused[unknown_codes]

    registry.rollback()  # back to the broken one's predecessor in the history
    registry.rollback()
    assert registry.alias_version("champion") == v1
    assert not follower.check_now() and holder.version == "prodtype/v1"


def test_background_thread_swaps_while_requests_keep_being_answered(
    registry: Registry, loop_settings: LoopSettings, tmp_path: Path
) -> None:
    v1 = register(registry, tmp_path / "v1", code=10)
    registry.promote(v1, reason="first")
    holder = ModelHolder()
    follower = ChampionFollower(holder, registry, loop_settings, loader=load_fake)
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

    def answered(code: int) -> int:
        return sum(mine.count(code) for mine in answers)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in answers]
    for t in threads:
        t.start()
    follower.start()
    try:
        until(lambda: errors or answered(10) >= 30, 20, "the clients were not answered by v1")
        v2 = register(registry, tmp_path / "v2", code=2583)
        registry.promote(v2, reason="better")
        follower.wake()
        until(lambda: holder.version == "prodtype/v2", 20, lambda: f"still serving {holder.version}")
        until(lambda: errors or answered(2583) >= 30, 20, "the clients were not answered by v2")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        follower.stop()
    assert not errors, errors
    assert holder.version == "prodtype/v2"
    for mine in answers:  # each client went from v1 to v2 once, and never back
        switch = mine.index(2583)
        assert switch > 0 and set(mine[:switch]) == {10} and set(mine[switch:]) == {2583}


def test_smoke_check_accepts_a_sane_predictor(tmp_path: Path) -> None:
    smoke_check(load_fake(write_bundle(tmp_path / "ok")), known_codes=[10, 2583, 2705])
