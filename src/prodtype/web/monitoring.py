"""The monitoring page (reviewers and admins): live accuracy and predictions by day, the predicted class
mix against the training labels with its PSI, the review backlog; drawn as inline SVG."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from prodtype.loop.monitoring import psi, shares, total_variation
from prodtype.serving.activity import activity, training_mix
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep
from prodtype.serving.uploads import ascii_number
from prodtype.web.charts import daily_line, grouped_bars
from prodtype.web.deps import PageReviewer
from prodtype.web.i18n import language, translator
from prodtype.web.render import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
WINDOWS = (7, 30, 90)


@router.get("/monitoring")
def monitoring_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    user: PageReviewer,
    days: str = "30",
) -> Response:
    _ = translator(language(request))
    window = ascii_number(days, 3)
    window = window if window in WINDOWS else 30
    seen = activity(session, window)
    train = training_mix(settings.data_dir)
    codes = sorted(set(train) | set(seen.predicted_counts) | set(catalog.codes))
    live_shares = shares(seen.predicted_counts, codes)
    train_shares = shares(train, codes)
    predicted = sum(seen.predicted_counts.values())
    shift = round(psi(train_shares, live_shares), 4) if predicted and train else None
    tvd = round(total_variation(train_shares, live_shares), 4) if predicted and train else None
    accuracy_days = [(d.day, a) for d in seen.days if (a := d.accuracy) is not None]
    reviewed = sum(d.reviewed for d in seen.days)
    unchanged = sum(d.unchanged for d in seen.days)
    charts = {
        "accuracy": daily_line(
            accuracy_days,
            _("Live accuracy by day: accepted unchanged / reviewed"),
            as_percent=True,
            threshold=settings.loop.live_accuracy_threshold,
            x_label=_("day (UTC)"),
            y_label=_("accepted unchanged"),
        )
        if accuracy_days
        else None,
        "predictions": daily_line(
            [(d.day, float(d.predictions)) for d in seen.days],
            _("Predictions per day"),
            as_percent=False,
            x_label=_("day (UTC)"),
            y_label=_("predictions"),
        ),
        "mix": grouped_bars(
            [(str(c), live_shares[c], train_shares[c]) for c in codes],
            _("predicted"),
            _("training labels"),
            _("Predicted class mix against the training mix"),
            x_label=_("product type (code)"),
            y_label=_("share of products"),
        )
        if predicted
        else None,
    }
    return render(
        request,
        "monitoring.html",
        user,
        nav="monitoring",
        window=window,
        windows=WINDOWS,
        seen=seen,
        predicted=predicted,
        reviewed=reviewed,
        accuracy=unchanged / reviewed if reviewed else None,
        psi=shift,
        tvd=tvd,
        has_training=bool(train),
        charts=charts,
        threshold=settings.loop.live_accuracy_threshold,
    )
