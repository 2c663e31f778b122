"""Prometheus metrics at ``/metrics``: requests by route and status, predictions by predicted type,
prediction latency and the model being served.

Only aggregates are exported (counts and timings by route template, type code and model version), never
usernames, ids or product text, so the endpoint needs no user login; ``PRODTYPE_METRICS_TOKEN`` restricts it
to a scraper that sends that bearer token. Each app has its own registry, so that several apps in one
process (the tests) do not share counters. With several worker processes (``prodtype serve --workers N``)
the figures are kept in prometheus-client's multiprocess mode, so that any worker's ``/metrics`` answers
for all of them (:mod:`prodtype.serving.multiproc`).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodtype.ml.predictor import Prediction, Predictor, PredictorWrapper, PreparedProduct, ProductInput
from prodtype.serving import multiproc
from prodtype.serving.model_holder import ModelHolder

METRICS_PATH = "/metrics"
UNMATCHED = "<unmatched>"  # requests no route answers: their paths would make the label set unbounded
# The HTTP parser accepts any token as a method: only these become label values, the rest count as "other"
# (each distinct value is a new series in every scrape, so a label must never take what a client sends).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, holder: ModelHolder) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "prodtype_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "prodtype_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status code",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "prodtype_predictions",
            "Products classified, by predicted product type code",
            ["prdtypecode"],
            registry=self.registry,
        )
        self.prediction_seconds = Histogram(
            "prodtype_prediction_duration_seconds",
            "Time the model takes to classify one product (text, and photo when has_image)",
            ["has_image"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shadow_products = Counter(
            "prodtype_shadow_products",
            "Products sent to the model in shadow, by outcome: scored, dropped (queue full) or failed",
            ["outcome"],
            registry=self.registry,
        )
        # collectors read at scrape time, in the worker that answers (the same in every worker)
        self.live: list[Collector] = []
        self.model_collector = _ModelCollector(holder)
        self.add_live(self.model_collector)

    def add_live(self, collector: Collector) -> None:
        """Export ``collector``'s figures, read at each scrape; with several workers they are read in the one
        that answers, beside the counters of all of them."""
        self.registry.register(collector)
        self.live.append(collector)

    def observe_prediction(self, result: Prediction, seconds: float, has_image: bool) -> None:
        self.predictions.labels(prdtypecode=str(result.prdtypecode)).inc()
        self.prediction_seconds.labels(has_image=str(has_image).lower()).observe(seconds)

    def exposition(self) -> bytes:
        if multiproc.enabled():
            return multiproc.exposition(self.live)
        return generate_latest(self.registry)


class _ModelCollector(Collector):
    """The served model, read at scrape time: a swap by the champion follower shows at the next scrape."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def collect(self) -> Iterable[Metric]:
        version = self.holder.version
        info = GaugeMetricFamily(
            "prodtype_model_info", "The model version being served (value 1)", labels=["version"]
        )
        if version is not None:
            info.add_metric([version], 1.0)
        yield info
        yield GaugeMetricFamily(
            "prodtype_model_loaded", "1 when a model is loaded, 0 otherwise", value=float(version is not None)
        )


class InstrumentedPredictor(PredictorWrapper):
    """A predictor that reports each prediction's type and duration; everything else is the inner one's."""

    def __init__(self, inner: Predictor, metrics: Metrics) -> None:
        super().__init__(inner)
        self._metrics = metrics

    def predict(
        self, designation: str, description: str = "", image: bytes | None = None, k: int = 5
    ) -> Prediction:
        start = time.perf_counter()
        result = self._inner.predict(designation, description, image, k=k)
        self._metrics.observe_prediction(result, time.perf_counter() - start, image is not None)
        return result

    def predict_many(self, products: list[ProductInput], k: int = 5) -> list[Prediction]:
        start = time.perf_counter()
        results = self._inner.predict_many(products, k=k)
        each = (time.perf_counter() - start) / max(len(results), 1)
        for product, result in zip(products, results, strict=False):
            self._metrics.observe_prediction(result, each, product.image is not None)
        return results

    def prepare(self, product: ProductInput) -> PreparedProduct:
        prepared: PreparedProduct = self._inner.prepare(product)  # type: ignore[attr-defined]
        return prepared

    def predict_prepared(self, items: list[PreparedProduct], k: int = 5) -> list[Prediction]:
        start = time.perf_counter()
        results: list[Prediction] = self._inner.predict_prepared(items, k)  # type: ignore[attr-defined]
        each = (time.perf_counter() - start) / max(len(results), 1)
        for item, result in zip(items, results, strict=False):
            self._metrics.observe_prediction(result, each, item.pixels is not None)
        return results


def instrument(app: Any, predictor: Predictor) -> Predictor:
    """``predictor`` reporting to ``app``'s metrics, or unchanged when the app has none."""
    metrics: Metrics | None = getattr(app.state, "metrics", None)
    return predictor if metrics is None else InstrumentedPredictor(predictor, metrics)


class RouteTemplates:
    """The template of the route a path belongs to (``/api/v1/predictions/{prediction_id}``), matched like
    the router does, over every route, those of included routers too. (What a request's scope names is the
    route inside its router, without the prefixes, so it cannot tell the API's routes from the pages'.)"""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._routes: list[tuple[re.Pattern[str], str]] | None = None

    def _table(self) -> list[tuple[re.Pattern[str], str]]:
        if self._routes is None:  # on the first request: every route has been added by then
            self._routes = [
                (ctx.path_regex, ctx.path_format)
                for ctx in iter_route_contexts(self.app.routes)
                if isinstance(getattr(ctx, "path_regex", None), re.Pattern) and ctx.path_format
            ]
        return self._routes

    def find(self, path: str) -> str:
        for regex, template in self._table():
            if regex.match(path):
                return template
        return UNMATCHED


class RequestMetrics:
    """Counts and times every HTTP request by the template of the route that answers its path."""

    def __init__(self, app: ASGIApp, metrics: Metrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = get_route_path(scope)  # before routing, which rewrites it for mounted apps
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            labels = {"method": method, "route": self.templates.find(path), "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.request_seconds.labels(**labels).observe(time.perf_counter() - start)


def install_metrics(app: FastAPI) -> Metrics:
    """Count requests and predictions of ``app`` and serve them at ``/metrics``."""
    metrics = Metrics(app.state.model_holder)
    app.state.metrics = metrics
    app.add_middleware(RequestMetrics, metrics=metrics, templates=RouteTemplates(app))

    @app.get(METRICS_PATH, include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        refused = _refused(request)
        if refused is not None:
            return refused
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _refused(request: Request) -> Response | None:
    """401 when ``PRODTYPE_METRICS_TOKEN`` is set and the request does not carry it as a bearer token."""
    settings = getattr(request.app.state, "settings", None)
    token = getattr(settings, "metrics_token", None)
    if token is None or not token.get_secret_value():
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
        return None
    return JSONResponse(
        {"detail": "GET /metrics needs the scraper's 'Authorization: Bearer <PRODTYPE_METRICS_TOKEN>'"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )
