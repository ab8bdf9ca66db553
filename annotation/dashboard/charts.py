"""Turns the dashboard's cached numbers into what the page shows: SVG charts, each with the table of its numbers.

Pure presentation: no queries. A chart is ``Chart(svg, head, rows)``; templates/annotation/_dashboard_chart.html
prints the SVG and the numbers in a <details> table.
"""
from dataclasses import dataclass, field

from django.utils.safestring import SafeString

from annotation.dashboard import svg as charts
from annotation.dashboard.evaluation import TRAINING_SETS
from annotation.dashboard.services import DashboardPage
from annotation.models import Source, Status

STATUS_ORDER = [Status.AUTO_ACCEPTED, Status.ACCEPTED, Status.NEEDS_REVIEW, Status.PROPOSED, Status.REJECTED,
                Status.FILTERED]
STATUS_COLORS = ["#0a7f8c", "#1a7f37", "#9a6700", "#8c959f", "#cf222e", "#59636e"]
ACTION_COLORS = ["#1a7f37", "#9a6700", "#cf222e"]


@dataclass
class Chart:
    svg: SafeString
    head: list[str]
    rows: list[list] = field(default_factory=list)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def status_chart(counts: dict[str, int]) -> Chart:
    rows = [(Status(s).label, counts.get(s, 0)) for s in STATUS_ORDER]
    return Chart(charts.bar_chart(rows, title="Items by status"), ["Status", "Items"], [list(r) for r in rows])


def overview_charts(data: dict) -> dict:
    """Charts for the overview snapshot (annotation/dashboard/services.py: overview_compute)."""
    statuses = [Status(s).label for s in STATUS_ORDER]
    label_rows = [(name, [counts.get(s, 0) for s in STATUS_ORDER]) for name, counts in data["label_status"].items()]
    sources = [(Source(s).label, n) for s, n in data["source_counts"].items()]
    rates = data["rates"]
    rate_rows = [(name, [r["accept"], r["edit"], r["reject"]]) for name, r in rates["per_label"].items()]
    users = [(u["user"], [u["accept"], u["edit"], u["reject"]]) for u in data["per_user"]]
    routing = data["routing"]
    routing_rows = [("Scored items", [routing["auto_accepted"], routing["reviewed"], routing["waiting"]])]
    actions = ["accept", "edit", "reject"]
    return {
        "labels": Chart(
            charts.stacked_bars(label_rows, statuses, colors=STATUS_COLORS, title="Items by label and status"),
            ["Label", *statuses, "Total"], [[n, *v, sum(v)] for n, v in label_rows]),
        "sources": Chart(charts.bar_chart(sources, title="Items by source", color="#8250df"), ["Source", "Items"],
                         [list(r) for r in sources]),
        "coverage": [
            {"dimension": grid["dimension"], "thin_cells": grid["thin_cells"], "chart": Chart(
                charts.heatmap(grid["rows"], grid["cols"], grid["matrix"], marked=grid["thin"],
                               title=f"Label × {grid['dimension']}", row_title="label", col_title=grid["dimension"]),
                ["Label", *grid["cols"]], [[r, *m] for r, m in zip(grid["rows"], grid["matrix"], strict=True)])}
            for grid in data["coverage"]
        ],
        "rates": Chart(
            charts.stacked_bars(rate_rows, actions, colors=ACTION_COLORS, shares=True,
                                title="Reviews by the LLM's label: accept, edit, reject"),
            ["LLM label", "Reviews", "Accept", "Edit", "Reject"],
            [[n, r["n"], _pct(r["accept_rate"]), _pct(r["edit_rate"]), _pct(r["reject_rate"])]
             for n, r in [*rates["per_label"].items(), ("All labels", rates["overall"])]]),
        "overall_rates": rates["overall"],
        "users": Chart(charts.stacked_bars(users, actions, colors=ACTION_COLORS, title="Reviews per annotator"),
                       ["Annotator", "Accept", "Edit", "Reject", "Total"], [[n, *v, sum(v)] for n, v in users]),
        "days": Chart(charts.bar_chart([(d["day"], d["n"]) for d in data["per_day"]],
                                       title="Reviews per day (last 30 days)", color="#0a7f8c"),
                      ["Day", "Reviews"], [[d["day"], d["n"]] for d in data["per_day"]]),
        "routing": Chart(
            charts.stacked_bars(routing_rows, ["auto-accepted", "reviewed", "waiting for review"],
                                colors=["#0a7f8c", "#1a7f37", "#9a6700"], title="Where scored items went"),
            ["", "Items", "Share"],
            [["Auto-accepted (reviews saved)", routing["auto_accepted"], _pct(routing["auto_share"])],
             ["Reviewed", routing["reviewed"], ""], ["Waiting for review", routing["waiting"], ""],
             ["Sent to people (reviewed + waiting)", routing["human"], _pct(routing["human_share"])],
             ["Human reviews made", routing["human_reviews"], ""]]),
        "routing_numbers": routing,
        "accuracy": data["accuracy"],
    }


DIVERSITY_SERIES = [("distinct-2", "distinct_2"), ("mean NN similarity", "mean_nn_similarity"),
                    ("near-duplicates", "near_duplicate_rate"), ("exact duplicates", "exact_duplicate_rate")]
DIVERSITY_HEAD = ["Items", "Sample", "distinct-1", "distinct-2", "mean NN sim.", "near-dup.", "exact dup."]


def _diversity_row(name, d: dict) -> list:
    return [name, d["items"], d["sample"], _num(d["distinct_1"]), _num(d["distinct_2"]),
            _num(d["mean_nn_similarity"]), _pct(d["near_duplicate_rate"]), _pct(d["exact_duplicate_rate"])]


def quality_charts(data: dict) -> dict:
    """Charts for the quality snapshot (annotation/dashboard/services.py: quality_compute)."""
    diversity = data["diversity"]
    per_label = diversity["per_label"]
    jobs = diversity["per_job"]
    confusion = data["confusion"]
    per_label_agreement = confusion["per_label"]
    result = {
        "diversity": diversity,
        "diversity_labels": Chart(
            charts.bar_chart([(n, d["distinct_2"]) for n, d in per_label.items()], fmt="{:.2f}", max_value=1,
                             title="distinct-2 per label (higher = more varied)"),
            ["Label", *DIVERSITY_HEAD],
            [_diversity_row("All generated", diversity["overall"])]
            + [_diversity_row(n, d) for n, d in per_label.items()]),
        "diversity_similarity": Chart(
            charts.bar_chart([(n, d["mean_nn_similarity"]) for n, d in per_label.items()], fmt="{:.2f}",
                             max_value=1, color="#bc4c00",
                             title="Mean nearest-neighbour similarity per label (lower = more varied)"),
            [], []),
        "agreement": data["agreement"],
        "confusion": confusion,
    }
    if jobs:
        result["diversity_jobs"] = Chart(
            charts.line_chart([f"#{j['job']}" for j in jobs],
                              [(name, [j[key] for j in jobs]) for name, key in DIVERSITY_SERIES],
                              title="Diversity from job to job"),
            ["Job", *DIVERSITY_HEAD], [_diversity_row(f"#{j['job']}", j) for j in jobs])
    if confusion["n"] and confusion["axis"]:
        result["confusion_chart"] = Chart(
            charts.heatmap(confusion["axis"], confusion["axis"], confusion["matrix"], row_title="person ↓",
                           col_title="LLM →", title="LLM label against the person's label"),
            ["Person \\ LLM", *confusion["axis"]],
            [[r, *m] for r, m in zip(confusion["axis"], confusion["matrix"], strict=True)])
    result["confusion_labels"] = Chart(
        charts.bar_chart([(n, c["f1"]) for n, c in per_label_agreement.items()], fmt="{:.2f}", max_value=1,
                         color="#1a7f37", title="LLM agreement with people per label (F1)"),
        ["Label", "both", "LLM only", "person only", "precision", "recall", "F1"],
        [[n, c["tp"], c["fp"], c["fn"], _num(c["precision"], 2), _num(c["recall"], 2), _num(c["f1"], 2)]
         for n, c in per_label_agreement.items()])
    return result


SHORT_SET_NAMES = {"curated": "curated", "llm": "LLM labels", "human": "human-reviewed"}


def evaluation_chart(run) -> Chart | None:
    scored = [(SHORT_SET_NAMES[name], r) for name, r in run.results.items() if "accuracy" in r]
    if not scored:
        return None
    rows = [(f"{name} · accuracy", r["accuracy"]) for name, r in scored]
    rows += [(f"{name} · macro-F1", r["macro_f1"]) for name, r in scored]
    return Chart(charts.bar_chart(rows, fmt="{:.3f}", max_value=1, title=f"Scores on {run.file_name}"),
                 ["Trained on", "Items", "Accuracy", "Macro-F1"],
                 [[TRAINING_SETS[name], r["n_train"], _num(r.get("accuracy")), _num(r.get("macro_f1"))]
                  if "accuracy" in r else [TRAINING_SETS[name], r["n_train"], r.get("skipped", ""), ""]
                  for name, r in run.results.items()])


def dashboard_charts(page: DashboardPage) -> dict:
    return {
        "status": status_chart(page.status_counts),
        "overview": overview_charts(page.overview.data) if page.overview and page.overview.data else None,
        "quality": quality_charts(page.quality.data) if page.quality and page.quality.data else None,
        "evaluations": [(run, evaluation_chart(run)) for run in page.evaluations],
    }
