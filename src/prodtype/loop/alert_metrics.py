"""The figures alerting rules need, at ``/metrics`` beside the request metrics (deploy/prometheus/alerts.yml).

| metric | meaning |
|---|---|
| ``prodtype_live_accuracy`` | share of the served model's last reviewed predictions accepted unchanged |
| ``prodtype_live_accuracy_reviews`` | how many reviews that share is over (at most the window) |
| ``prodtype_live_accuracy_threshold``, ``..._min_reviews`` | the retrain trigger's settings |
| ``prodtype_class_mix_psi`` | PSI of the predicted class mix (window) vs the served model's training mix |
| ``prodtype_class_mix_predictions`` | predictions in that window |
| ``prodtype_review_backlog``, ``prodtype_review_backlog_oldest_age_seconds`` | pending predictions, oldest |
| ``prodtype_retrain_runs_total{outcome}`` | retrains that ended, by outcome (from the audit log) |
| ``prodtype_retrain_last_failed``, ``prodtype_retrain_last_timestamp_seconds`` | the latest retrain |
| ``prodtype_alert_figures_ok`` | 0 when the figures could not be read from the database |

A figure that has no value yet (no reviews, no predictions in the window, no retrain) is left out rather
than exported as 0, so that no alert fires on it.

The figures are the loop's (live accuracy, drift, retrain outcomes), so this collector lives in ``loop``
(``serving`` never imports ``loop``); ``prodtype.app`` adds it to the registry of ``serving.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from prodtype.config import LoopSettings, Settings
from prodtype.loop.alert_figures import AlertFigures, CachedFigures, compute_figures, training_class_counts
from prodtype.serving.model_holder import ModelHolder


def _gauge(name: str, doc: str, value: float | None) -> Iterable[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=float(value))


class AlertFiguresCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._counts: tuple[str | None, dict[int, int]] = (None, {})
        self.cache = CachedFigures(self._compute, self._loop().metrics_refresh_seconds)

    def _loop(self) -> LoopSettings:
        settings: Settings = self.app.state.settings
        return settings.loop

    def _training_counts(self, holder: ModelHolder) -> dict[int, int]:
        """The served bundle's training class counts, read once per served version."""
        version = holder.version
        if version is None:
            return {}
        if self._counts[0] != version:
            path = getattr(holder.get(), "path", None)
            self._counts = (version, training_class_counts(Path(path) if path is not None else None))
        return self._counts[1]

    def _compute(self) -> AlertFigures:
        holder: ModelHolder = self.app.state.model_holder
        version = holder.version
        with self.app.state.sessions() as session:
            return compute_figures(
                session,
                model_version=version,
                training_counts=self._training_counts(holder),
                live_accuracy_window=self._loop().live_accuracy_window,
                class_mix_window=timedelta(hours=self._loop().class_mix_window_hours),
            )

    def describe(self) -> Iterable[Metric]:
        return []  # so that registering does not run the queries (the names are all prodtype_-prefixed)

    def collect(self) -> Iterable[Metric]:
        loop = self._loop()
        yield GaugeMetricFamily(
            "prodtype_live_accuracy_threshold",
            "Live accuracy under which a retrain is due (PRODTYPE_LIVE_ACCURACY_THRESHOLD)",
            value=loop.live_accuracy_threshold,
        )
        yield GaugeMetricFamily(
            "prodtype_live_accuracy_min_reviews",
            "Reviews needed before the live accuracy counts (PRODTYPE_LIVE_ACCURACY_MIN_REVIEWS)",
            value=loop.live_accuracy_min_reviews,
        )
        yield GaugeMetricFamily(
            "prodtype_class_mix_window_seconds",
            "Window of predictions whose class mix is compared (PRODTYPE_CLASS_MIX_WINDOW_HOURS)",
            value=loop.class_mix_window_hours * 3600,
        )
        figures = self.cache.get()
        yield GaugeMetricFamily(
            "prodtype_alert_figures_ok",
            "1 when the figures below were read from the database, 0 when it failed",
            value=float(figures is not None),
        )
        if figures is None:
            return
        yield from _gauge(
            "prodtype_live_accuracy",
            "Share of the served model's last reviewed predictions that reviewers accepted unchanged",
            figures.live_accuracy,
        )
        yield GaugeMetricFamily(
            "prodtype_live_accuracy_reviews",
            "Reviews of the served model's predictions behind prodtype_live_accuracy",
            value=figures.live_accuracy_reviews,
        )
        yield from _gauge(
            "prodtype_class_mix_psi",
            "PSI of the predicted class mix over the window against the served model's training mix",
            figures.class_mix_psi,
        )
        yield GaugeMetricFamily(
            "prodtype_class_mix_predictions",
            "Predictions in the class-mix window",
            value=figures.class_mix_predictions,
        )
        yield GaugeMetricFamily(
            "prodtype_review_backlog", "Predictions waiting for a review", value=figures.review_backlog
        )
        yield from _gauge(
            "prodtype_review_backlog_oldest_age_seconds",
            "Age of the oldest prediction waiting for a review",
            figures.review_backlog_oldest_seconds,
        )
        runs = CounterMetricFamily(
            "prodtype_retrain_runs", "Retrains that ended, by outcome (audit log)", labels=["outcome"]
        )
        runs.add_metric(["succeeded"], figures.retrain.succeeded)
        runs.add_metric(["failed"], figures.retrain.failed)
        yield runs
        if figures.retrain.last_outcome is not None:
            yield GaugeMetricFamily(
                "prodtype_retrain_last_failed",
                "1 when the latest retrain failed, 0 when it succeeded",
                value=float(figures.retrain.last_outcome == "failed"),
            )
            if figures.retrain.last_at is not None:
                last = GaugeMetricFamily(
                    "prodtype_retrain_last_timestamp_seconds",
                    "When the latest retrain ended (Unix time), with its outcome",
                    labels=["outcome"],
                )
                last.add_metric([figures.retrain.last_outcome], figures.retrain.last_at.timestamp())
                yield last


def install_alert_metrics(app: FastAPI) -> AlertFiguresCollector:
    """Add the alert figures to the app's ``/metrics`` (after ``install_metrics``), with the loop's settings
    of ``app.state.settings``."""
    collector = AlertFiguresCollector(app)
    app.state.metrics.add_live(collector)  # read from the database: the same whichever worker answers
    app.state.alert_figures = collector
    return collector
