"""The shadow evaluation's live figures at ``/metrics`` (read from the database, so the same in every worker).

| metric | meaning |
|---|---|
| ``prodtype_shadow_version`` | the registry version in shadow (absent when none) |
| ``prodtype_shadow_reviewed_products`` | reviewed products that both it and the served model answered |
| ``prodtype_shadow_live_accuracy{model}`` | accuracy on them, ``model`` champion or challenger |
| ``prodtype_shadow_live_accuracy_low{model}``, ``..._high{model}`` | its 95 % Wilson interval |
| ``prodtype_shadow_live_accuracy_difference`` (``_low``, ``_high``) | challenger minus champion, paired |
| ``prodtype_shadow_products_total{outcome}`` | (serving.metrics) scored, dropped (queue full), failed |

Accuracies are left out until at least one reviewed product has both answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from fastapi import FastAPI
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prodtype.config import Settings
from prodtype.loop.shadow import LiveComparison, ShadowLedger, compare_live

log = logging.getLogger(__name__)


class ShadowFiguresCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._value: tuple[int | None, LiveComparison | None] = (None, None)

    def _compute(self) -> tuple[int | None, LiveComparison | None]:
        settings: Settings = self.app.state.settings
        record = ShadowLedger(self.app.state.sessions).current(settings.loop.registered_model_name)
        if record is None:
            return None, None
        with self.app.state.sessions() as session:
            return record.version, compare_live(session, record.version)

    def figures(self) -> tuple[int | None, LiveComparison | None]:
        settings: Settings = self.app.state.settings
        with self._lock:
            if time.monotonic() - self._at >= settings.loop.metrics_refresh_seconds:
                try:
                    self._value = self._compute()
                except Exception as exc:  # a scrape never fails for it; the figures are left out
                    log.warning("could not compute the shadow figures: %s", exc)
                    self._value = (None, None)
                self._at = time.monotonic()
            return self._value

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        version, live = self.figures()
        if version is None or live is None:
            return
        yield GaugeMetricFamily("prodtype_shadow_version", "Registry version in shadow", value=version)
        yield GaugeMetricFamily(
            "prodtype_shadow_reviewed_products",
            "Reviewed products answered by both the served model and the version in shadow",
            value=live.n,
        )
        if live.n == 0:
            return
        for suffix, doc, field in (
            ("", "Live accuracy on the same reviewed products", "accuracy"),
            ("_low", "Lower bound of its 95 % Wilson interval", "low"),
            ("_high", "Upper bound of its 95 % Wilson interval", "high"),
        ):
            family = GaugeMetricFamily(f"prodtype_shadow_live_accuracy{suffix}", doc, labels=["model"])
            for model, figures in (("champion", live.champion), ("challenger", live.challenger)):
                value = getattr(figures, field)
                if value is not None:
                    family.add_metric([model], value)
            yield family
        for suffix, value in (
            ("", live.difference),
            ("_low", live.difference_low),
            ("_high", live.difference_high),
        ):
            if value is not None:
                yield GaugeMetricFamily(
                    f"prodtype_shadow_live_accuracy_difference{suffix}",
                    "Challenger's live accuracy minus the champion's on the same products (paired, 95 %)",
                    value=value,
                )


def install_shadow_metrics(app: FastAPI) -> ShadowFiguresCollector:
    collector = ShadowFiguresCollector(app)
    app.state.metrics.add_live(collector)
    return collector
