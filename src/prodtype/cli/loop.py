"""Learning-loop commands: ``export-feedback``, ``retrain``, ``models list|promote|rollback``, ``monitor``.

``prodtype.cli`` calls :func:`register`; ``python -m prodtype.cli.loop`` runs these commands alone (the API
starts background retrains that way). Results are printed as JSON on stdout, messages on stderr.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from prodtype.cli.errors import exit_on
from prodtype.loop.registry import RegistryError
from prodtype.loop.steps import STEPS
from prodtype.serving.errors import ServiceError

err = Console(stderr=True)
out = Console()


# One option value per retrain step (prodtype.loop.steps, checked against prodtype.loop.retrain.RUN_STEPS).
Step = enum.StrEnum("Step", {name: name for name in STEPS})  # type: ignore[misc]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _errors() -> AbstractContextManager[None]:
    return exit_on((ServiceError, RegistryError), 1)


def _ctx() -> Any:
    from prodtype.loop.retrain import LoopContext

    return LoopContext.from_settings()


def _logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def export_feedback_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write X/Y csv and image_train/ into")],
) -> None:
    """Write the accepted and corrected predictions in the challenge format (rejected ones are left out)."""
    from prodtype.loop.feedback import export_feedback

    with _errors():
        ctx = _ctx()
        with ctx.sessions()() as session:
            result = export_feedback(session, ctx.store(), out_dir)
    summary = result.summary()
    summary.pop("prediction_ids")
    _print_json(summary)
    err.print(
        f"{result.rows} product(s) written to {out_dir} ({result.with_image} with an image, "
        f"{result.duplicates} duplicate(s) counted once, {result.rejected_excluded} rejected left out)"
    )


def retrain_cmd(
    step: Annotated[
        Step | None, typer.Option(help="Run one step only (for orchestration); default: all")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Run folder name under <storage>/loop/runs (needed with --step)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Train even if the trigger has not fired")] = False,
    not_needed_exit_code: Annotated[
        int, typer.Option(help="Exit code of --step check when no retrain is needed (Airflow skips on 99)")
    ] = 0,
    shuffle_labels: Annotated[
        bool, typer.Option("--shuffle-labels", help="Sanity check: train on shuffled labels (never promoted)")
    ] = False,
    job_id: Annotated[
        str | None, typer.Option(hidden=True, help="Job record to update (set by the API)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars, warnings only")] = False,
) -> None:
    """Retrain on the base data plus reviewed feedback, evaluate against the champion, register, promote."""
    from prodtype.loop import retrain, retrain_jobs
    from prodtype.loop.retrain_outcomes import recorded
    from prodtype.loop.run_store import shared_run_folder

    _logging(quiet)
    ctx = _ctx()
    if job_id:
        _run_job(ctx, job_id, force, shuffle_labels)
        return
    with _errors():
        if step is None:
            with retrain_jobs.retrain_lock(ctx.settings):
                run_dir = retrain.new_run_dir(ctx, run_name) if run_name else None
                with recorded(ctx.sessions, run_name or "cli") as outcome:
                    result = retrain.run_all(
                        ctx, force=force, run_dir=run_dir, shuffle_labels=shuffle_labels, progress=not quiet
                    )
                    outcome.final = result.retrained
                _print_json(result.printed())
            return
        if step == "check":
            status = retrain.check(ctx)
            _print_json(status.to_dict())
            if not (status.should_retrain or force):
                err.print("no retrain needed: " + _figures(status.to_dict()))
                raise typer.Exit(not_needed_exit_code)
            return
        if not run_name:
            err.print("[red]error:[/red] --step needs --run-name (the run folder shared by the steps)")
            raise typer.Exit(2)
        run_dir = retrain.new_run_dir(ctx, run_name)
        with (
            retrain_jobs.retrain_lock(ctx.settings, f"retrain step {step.value}"),
            # the last step of the table ends the retrain: its success is the retrain's
            recorded(ctx.sessions, run_name, final=step.value == retrain.STEPS[-1]),
            # steps of one run may run on different machines: the folder goes through the object store
            shared_run_folder(ctx.settings, run_dir),
        ):
            result = retrain.RUN_STEPS[step.value](ctx, run_dir, shuffle_labels, not quiet)
        _print_json(result)


def _figures(status: dict[str, Any]) -> str:
    acc = status.get("live_accuracy")
    shown = "n/a" if acc is None else f"{acc:.3f}"
    return (
        f"{status['new_reviewed_products']} new reviewed products (threshold {status['min_new_reviews']}), "
        f"live accuracy {shown} over {status['live_accuracy_reviews']} reviews "
        f"(threshold {status['live_accuracy_threshold']})"
    )


def _run_job(ctx: Any, job_id: str, force: bool, shuffle_labels: bool) -> None:
    """Run a retrain for an API job, keeping its record up to date."""
    from prodtype.loop import retrain, retrain_jobs
    from prodtype.loop.retrain_outcomes import recorded

    settings = ctx.settings
    try:
        # The record's end is written while the lock is still held: with PostgreSQL, a running job whose
        # lock is free is taken for dead.
        with retrain_jobs.job_lock(settings, job_id):
            try:
                run_dir = retrain.new_run_dir(ctx, f"job-{job_id}")
                retrain_jobs.update_job(settings, job_id, run_dir=str(run_dir), step="check")
                with recorded(ctx.sessions, job_id) as outcome:
                    result = retrain.run_all(
                        ctx,
                        force=force,
                        run_dir=run_dir,
                        shuffle_labels=shuffle_labels,
                        on_step=lambda s: retrain_jobs.update_job(settings, job_id, step=s),
                    )
                    outcome.final = result.retrained
            except BaseException as exc:
                error = f"{type(exc).__name__}: {exc}"
                retrain_jobs.update_job(settings, job_id, status="failed", error=error)
                raise
            retrain_jobs.update_job(settings, job_id, status="succeeded", step="done", result=result)
    except retrain_jobs.RetrainBusyError as exc:  # only from taking the lock: the run's own are recorded
        err.print(f"error: {exc}")
        raise typer.Exit(retrain_jobs.BUSY_EXIT) from None
    _print_json(result.printed())


def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """The registered versions, newest first: champion, challenger, evaluation F1, why (not) promoted."""
    from prodtype.loop import model_versions
    from prodtype.loop.registry import Registry

    with _errors():
        ctx = _ctx()
        listing = model_versions.list_models(Registry.from_settings(ctx.settings))
    if as_json:
        _print_json(listing.model_dump(mode="json"))
        return
    table = Table(title=f"registered model {listing.model!r}")
    for col in ("version", "status", "eval weighted F1", "created", "reason"):
        table.add_column(col)
    for v in listing.data:
        f1 = v.eval_weighted_f1
        table.add_row(
            str(v.version), v.status, "" if f1 is None else f"{f1:.4f}", v.created_at[:19], v.reason or ""
        )
    out.print(table)
    if not listing.data:
        err.print("no version registered yet: run `prodtype retrain --force`")


def models_promote(
    version: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str | None, typer.Option(help="Kept in the champion history")] = None,
) -> None:
    """Make VERSION the champion (its bundle is loaded and checked first); running services follow."""
    from prodtype.catalog import load_catalog
    from prodtype.loop import model_versions
    from prodtype.loop.champion import load_checked
    from prodtype.loop.ledger import PromotionLedger
    from prodtype.loop.registry import Registry

    with _errors():
        ctx = _ctx()
        codes = load_catalog(ctx.settings.categories_file).codes
        info = model_versions.promote(
            Registry.from_settings(ctx.settings),
            version,
            actor="cli",
            reason=reason,
            check=lambda p: load_checked(p, codes),
            ledger=PromotionLedger(ctx.sessions()),
        )
    _print_json(info.model_dump(mode="json"))


def models_rollback(
    reason: Annotated[str | None, typer.Option(help="Kept in the champion history")] = None,
) -> None:
    """Give the champion alias back to the previous champion; running services follow."""
    from prodtype.catalog import load_catalog
    from prodtype.loop import model_versions
    from prodtype.loop.champion import load_checked
    from prodtype.loop.ledger import PromotionLedger
    from prodtype.loop.registry import Registry

    with _errors():
        ctx = _ctx()
        codes = load_catalog(ctx.settings.categories_file).codes
        info = model_versions.rollback(
            Registry.from_settings(ctx.settings),
            actor="cli",
            reason=reason,
            check=lambda p: load_checked(p, codes),
            ledger=PromotionLedger(ctx.sessions()),
        )
    _print_json(info.model_dump(mode="json"))


def monitor_cmd(
    days: Annotated[float, typer.Option(min=0.01, help="Window of predictions to look at, in days")] = 1.0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the JSON report and the plot")
    ] = None,
) -> None:
    """Daily figures: live accuracy, predicted class mix against training, count awaiting review."""
    from prodtype.loop import monitoring

    with _errors():
        ctx = _ctx()
        report = monitoring.monitor(ctx, days=days, out_dir=out_dir)
    _print_json(report)


def register(app: typer.Typer) -> None:
    app.command("export-feedback")(export_feedback_cmd)
    app.command("retrain")(retrain_cmd)
    app.command("monitor")(monitor_cmd)
    models_app = typer.Typer(no_args_is_help=True, help="Registered model versions (MLflow registry).")
    models_app.command("list")(models_list)
    models_app.command("promote")(models_promote)
    models_app.command("rollback")(models_rollback)
    app.add_typer(models_app, name="models")


def main() -> None:
    app = typer.Typer(no_args_is_help=True, help="prodtype learning loop")
    register(app)
    app()


if __name__ == "__main__":
    main()
