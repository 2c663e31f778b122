"""Model cards: one Markdown page per registered version, built from what the registry holds about it.

The facts come from the version's MLflow run (parameters: data fingerprints and counts; the evaluation
report ``evaluation/candidate/metrics.json``: figures overall and per class, calibration), from its bundle's
``training_report.json`` (class counts, out-of-fold figures, configuration, library versions) and from its
tags (the promotion decision and its reason). The card is logged to the run as ``model_card/model_card.md``
when the version is registered, and again when the promotion step has decided; ``GET
/api/v1/models/{version}/card`` renders it from the same facts, with the version's current status.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodtype.catalog import Catalog
from prodtype.loop.registry import CHAMPION, ModelVersionInfo, Registry

log = logging.getLogger(__name__)

CARD_ARTIFACT = "model_card"
CARD_FILE = "model_card.md"
EVALUATION_METRICS = "evaluation/candidate/metrics.json"
TRAINING_REPORT = "bundle/training_report.json"
WORST_CLASSES = 3
FEW_TRAINING_EXAMPLES = 30  # a class learnt from fewer products than this is a known limit
FEW_EVALUATION_EXAMPLES = 10  # its F1 on fewer evaluation products than this moves by 0.1 per error


@dataclass(frozen=True)
class ModelCard:
    version: int
    markdown: str
    facts: dict[str, Any] = field(default_factory=dict)


def _read_artifact(registry: Registry, run_id: str, path: str) -> str:
    """A text artifact of the run: read in place when the artifact store is on this disk (embedded), else
    downloaded (a tracking server)."""
    from prodtype.loop.registry import _local_path

    local_root = _local_path(str(registry.client.get_run(run_id).info.artifact_uri))
    if local_root is not None:
        return (local_root / path).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        return Path(registry.client.download_artifacts(run_id, path, tmp)).read_text()


def _artifact_json(registry: Registry, run_id: str | None, path: str) -> dict[str, Any]:
    """A JSON artifact of the run, or {} when the run or the file is missing (older versions)."""
    if not run_id:
        return {}
    try:
        data = json.loads(_read_artifact(registry, run_id, path))
    except Exception as exc:  # a run without this artifact still gets a card, with what is known
        log.info("no %s in run %s: %s", path, run_id, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _params(registry: Registry, run_id: str | None) -> dict[str, str]:
    if not run_id:
        return {}
    try:
        return dict(registry.client.get_run(run_id).data.params)
    except Exception:
        return {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def card_facts(registry: Registry, info: ModelVersionInfo, catalog: Catalog) -> dict[str, Any]:
    """Everything the card says, as plain data (also the JSON beside the Markdown)."""
    params = _params(registry, info.run_id)
    evaluation = _artifact_json(registry, info.run_id, EVALUATION_METRICS)
    report = _artifact_json(registry, info.run_id, TRAINING_REPORT)
    base, feedback = _int(params.get("base_rows")), _int(params.get("feedback_rows"))
    per_class = evaluation.get("per_class") or {}
    train_counts = {str(k): int(v) for k, v in (report.get("class_counts") or {}).items()}
    classes = []
    for code in sorted(set(per_class) | set(train_counts), key=int):
        m = per_class.get(code, {})
        classes.append(
            {
                "code": int(code),
                "name": catalog.name(int(code)) if int(code) in catalog.codes else str(code),
                "training_examples": train_counts.get(code),
                "support": m.get("support"),
                "precision": m.get("precision"),
                "recall": m.get("recall"),
                "f1": m.get("f1"),
            }
        )
    scored = [c for c in classes if c["f1"] is not None and c["support"]]
    worst = sorted(scored, key=lambda c: (c["f1"], c["code"]))[:WORST_CLASSES]
    few = [
        c
        for c in classes
        if (c["training_examples"] is not None and c["training_examples"] < FEW_TRAINING_EXAMPLES)
        or (c["support"] is not None and c["support"] < FEW_EVALUATION_EXAMPLES)
    ]
    history = [h for h in registry.history() if h.get("version") == info.version]
    return {
        "version": info.version,
        "model": registry.model_name,
        "status": "champion" if CHAMPION in info.aliases else info.tags.get("promotion", "registered"),
        "registered_at": info.created_at.isoformat(timespec="seconds"),
        "run_id": info.run_id,
        "bundle_version": info.tags.get("bundle_version"),
        "data": {
            "input_fingerprint": params.get("input_fingerprint") or info.tags.get("input_fingerprint"),
            "base_fingerprint": params.get("base_fingerprint"),
            "eval_fingerprint": params.get("eval_fingerprint") or info.tags.get("eval_fingerprint"),
            "base_rows": base,
            "base_image_only": _int(params.get("base_image_only")),
            "feedback_rows": feedback,
            "feedback_share": (feedback / (base + feedback))
            if base is not None and feedback and base + feedback
            else 0.0,
            "feedback_duplicates": _int(params.get("feedback_duplicates")),
            "feedback_rejected_excluded": _int(params.get("feedback_rejected_excluded")),
            "eval_rows": _int(params.get("eval_rows")),
            "rows": report.get("rows") or {},
            "missing_images": (report.get("missing_images") or {}).get("count"),
            "unreadable_images": (report.get("unreadable_images") or {}).get("count"),
            "data_dir": params.get("data_dir"),
            "reviewed_until": params.get("reviewed_until"),
        },
        "evaluation": {
            "n": evaluation.get("n"),
            "weighted_f1": evaluation.get("weighted_f1"),
            "macro_f1": evaluation.get("macro_f1"),
            "accuracy": evaluation.get("accuracy"),
            "with_image": evaluation.get("with_image"),
            "text_only": evaluation.get("text_only"),
            "ece": evaluation.get("ece"),
            "out_of_fold": report.get("out_of_fold") or {},
            "champion_version": _int(params.get("champion_version")),
            "champion_weighted_f1": info.metrics.get("champion_eval_weighted_f1"),
            "gain_weighted_f1": info.metrics.get("gain_weighted_f1"),
        },
        "classes": classes,
        "worst_classes": [c["code"] for c in worst],
        "few_examples": [c["code"] for c in few],
        "promotion": {
            "decision": info.tags.get("promotion"),
            "reason": info.tags.get("promotion_reason"),
            "history": history,
        },
        "reproduce": {
            "prodtype_version": params.get("prodtype_version"),
            "train_config": params.get("train_config"),
            "config": report.get("config"),
            "image_encoder": report.get("image_encoder"),
            "versions": report.get("versions") or {},
            "shuffle_labels": params.get("shuffle_labels"),
        },
    }


def _f(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _n(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _md(text: Any) -> str:
    """Plain text in a Markdown table or line: no HTML, no table breaks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def render(facts: dict[str, Any]) -> str:
    d, e, p, r = facts["data"], facts["evaluation"], facts["promotion"], facts["reproduce"]
    by_code = {c["code"]: c for c in facts["classes"]}
    lines = [
        f"# Model card: {_md(facts['model'])} version {facts['version']}",
        "",
        f"Status: **{_md(facts['status'])}**. Registered {facts['registered_at']} (MLflow run "
        f"`{_md(facts['run_id'])}`, bundle `{_md(facts['bundle_version'])}`).",
        "",
        "## Data",
        "",
        f"- Input fingerprint: `{_md(d['input_fingerprint'])}` (base data `{_md(d['base_fingerprint'])}`)",
        f"- Training products: {_n(d['base_rows'])} from the base data + {_n(d['feedback_rows'])} reviewed "
        f"feedback products (feedback share {_f(d['feedback_share'] * 100, 1)} %); "
        f"{_n(d['base_image_only'])} image-only photos",
        f"- Feedback left out: {_n(d['feedback_duplicates'])} duplicates, "
        f"{_n(d['feedback_rejected_excluded'])} rejected products; reviews up to {_md(d['reviewed_until'])}",
        f"- Products with a photo: {_n(d['rows'].get('products_with_image'))}; missing photos "
        f"{_n(d['missing_images'])}, unreadable {_n(d['unreadable_images'])}",
        f"- Evaluation set: {_n(d['eval_rows'])} products, fingerprint `{_md(d['eval_fingerprint'])}` "
        "(never trained on)",
        "",
        "## Evaluation",
        "",
        "| set | products | weighted F1 | macro F1 | accuracy |",
        "|---|---|---|---|---|",
        f"| all | {_n(e['n'])} | {_f(e['weighted_f1'])} | {_f(e['macro_f1'])} | {_f(e['accuracy'])} |",
    ]
    for label, key in (("with a photo", "with_image"), ("text only", "text_only")):
        s = e.get(key) or {}
        lines.append(
            f"| {label} | {_n(s.get('n'))} | {_f(s.get('weighted_f1'))} | {_f(s.get('macro_f1'))} | "
            f"{_f(s.get('accuracy'))} |"
        )
    if e["champion_version"] is not None:
        lines += [
            "",
            f"Against the champion of the time (version {e['champion_version']}, same evaluation set): "
            f"weighted F1 {_f(e['champion_weighted_f1'])}, gain {_f(e['gain_weighted_f1'])}.",
        ]
    worst = "; ".join(
        f"{code} {_md(by_code[code]['name'])} (F1 {_f(by_code[code]['f1'], 2)})"
        for code in facts["worst_classes"]
    )
    lines += [
        "",
        f"Worst classes: {worst or 'n/a'}.",
        "",
        "| code | type | training products | evaluation products | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(facts["classes"], key=lambda c: (c["f1"] is None, c["f1"] or 0.0, c["code"])):
        lines.append(
            f"| {c['code']} | {_md(c['name'])} | {_n(c['training_examples'])} | {_n(c['support'])} | "
            f"{_f(c['precision'], 3)} | {_f(c['recall'], 3)} | {_f(c['f1'], 3)} |"
        )
    oof = e["out_of_fold"]
    lines += [
        "",
        "## Calibration",
        "",
        f"Expected calibration error of the confidence on the evaluation set: {_f(e['ece'])} "
        f"(out of fold during training: {_f(oof.get('ece'))}; 0 means a confidence of 0.8 is right 80 % of "
        "the time). The review queue sorts by this confidence.",
        "",
        "## Promotion",
        "",
        f"Decision: **{_md(p['decision'])}**. {_md(p['reason'])}",
    ]
    for h in p["history"]:
        lines.append(
            f"- {_md(h.get('at'))}: {_md(h.get('action'))} by {_md(h.get('by'))}: {_md(h.get('reason'))}"
        )
    few = [by_code[code] for code in facts["few_examples"]]
    lines += ["", "## Known limits", ""]
    if few:
        lines.append(
            f"Classes with fewer than {FEW_TRAINING_EXAMPLES} training products or {FEW_EVALUATION_EXAMPLES} "
            "evaluation products (their figures are uncertain, their predictions less reliable):"
        )
        lines += [
            f"- {c['code']} {_md(c['name'])}: {_n(c['training_examples'])} training, "
            f"{_n(c['support'])} evaluation"
            for c in few
        ]
    else:
        lines.append("No class has few training or evaluation products.")
    lines += [
        "- Trained and evaluated on the product types of the Rakuten France catalogue; a product of another "
        "kind still gets one of these types, with a low confidence.",
        "- Titles and descriptions are French for the most part; the figures hold for text like the "
        "training data.",
        "",
        "## How to reproduce",
        "",
        f"prodtype {_md(r['prodtype_version'])}; image encoder `{_md(r['image_encoder'])}`; training "
        f"configuration `{_md(r['train_config'])}`"
        + (" (labels shuffled: a sanity check)" if str(r["shuffle_labels"]) == "True" else "")
        + ".",
        "",
        "```bash",
        f"export PRODTYPE_DATA_DIR={d['data_dir']}  # base data, fingerprint {d['base_fingerprint']}",
        "prodtype retrain --force                  # same evaluation split (<storage>/loop/eval_split.json)",
        "```",
        "",
        "The feedback products are in the run's `feedback/feedback.json` artifact; library versions: "
        + ", ".join(f"{_md(k)} {_md(v)}" for k, v in sorted(r["versions"].items()))
        + ".",
        "",
    ]
    return "\n".join(lines)


def build_card(registry: Registry, version: int, catalog: Catalog) -> ModelCard:
    """The card of ``version`` from the registry (UnknownVersionError when there is none)."""
    info = registry.get(version)
    facts = card_facts(registry, info, catalog)
    return ModelCard(version, render(facts), facts)


def log_card(registry: Registry, version: int, catalog: Catalog) -> ModelCard:
    """Build the card and log it to the version's run as ``model_card/model_card.md`` (and ``.json``)."""
    card = build_card(registry, version, catalog)
    info = registry.get(version)
    if info.run_id:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / CARD_ARTIFACT
            folder.mkdir()
            (folder / CARD_FILE).write_text(card.markdown)
            (folder / "model_card.json").write_text(json.dumps(card.facts, indent=2, default=str))
            registry.client.log_artifacts(info.run_id, str(folder), CARD_ARTIFACT)
    return card


def logged_card(registry: Registry, version: int) -> str | None:
    """The Markdown card logged with the version, or None when none was logged."""
    info = registry.get(version)
    if not info.run_id:
        return None
    try:
        return _read_artifact(registry, info.run_id, f"{CARD_ARTIFACT}/{CARD_FILE}")
    except Exception:
        return None
