"""How accurate is what no person looked at? Estimates from random checks, with 95% Clopper-Pearson intervals.

A check is a person's decision on a randomly drawn item: the calibration samples and the audits (random draws from the
items the router would auto-accept). The latest round counts the checks whose ambiguity now falls in the range it
auto-accepts (``Project.routing_state["region"]``, annotation/selection/rounds.py): the share whose LLM label stood
estimates the accuracy of the auto-accepted items. Once ``AUDITS_ALONE`` audits fall in that range, they alone do:
audits are drawn from items as they enter the range unreviewed, what auto-accepted items are, while the calibration
sample was drawn from every item before the router's reviews took errors out of the range. With both, the interval
held the auto-accepted items' true accuracy in 75 of 116 rounds on three mr_gpt35 seeds, every miss pessimistic;
with the audits alone once there were 30, in 98 (bench/RESULTS.md). The certificate's bound still counts both kinds
of check. All audits ever reviewed would not: the range moves round after round, and audits drawn from an earlier,
wider range held the current auto-accepted items' true accuracy in 6 of 56 rounds on mr_gpt35 (bench/RESULTS.md).
Projects routed before the certificate existed (no region recorded) fall back to every completed audit.

Intervals. Wilson's interval, shown until session 9, covers only 86-92% when the error rate is a few per thousand and
the checks number 30 to 200 (computed exactly in bench/RESULTS.md), which is where auto-accepted items are; its misses
there are pessimistic (one error among few checks pulls the upper end below the truth). The Clopper-Pearson ("exact")
interval covers at least 95% at every rate and size, at the price of width; a lead reads the interval as a promise.

Checks still waiting. Audits are drawn as items enter the range, and people review them after: right after a round
that widened the range, the decided checks all come from its older, cleaner part, and the items that just joined (the
most ambiguous auto-accepted) have none of their own. Counted as one sample, the checks then held the truth in 2 of 3
budget-mode projects on sms_spam, both misses optimistic. So the round cuts the auto-accepted items at the least
ambiguous random check among them still waiting (``calibration.region_zones``): below it every check drawn is decided;
from it up, the zone is estimated from the checks that fall in it (mostly calibration items, few), and the interval
combines the zones' exact intervals at 97.5% each (Bonferroni: both hold together at least 95% of the time), weighted
by their items.

The whole-dataset estimate counts items a person accepted as correct and the auto-accepted ones at that estimate,
weighted by their counts; its interval carries the checks' interval over the same way.
"""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q
from scipy.stats import beta

from annotation.models import Item, Project, ScoringRound, Status


@dataclass(frozen=True)
class Zone:
    """Part of the auto-accepted items and the checks counted for it (``calibration.region_zones``)."""

    items: int
    successes: int
    n: int


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    kind: str = "random checks"  # what was counted, in the words the Routing page uses
    # With random checks still waiting among the auto-accepted items: the items below the least ambiguous of them and
    # those from it up, each estimated from its own checks (module docstring). Empty: one sample for all.
    zones: tuple[Zone, ...] = ()

    @property
    def value(self) -> float | None:
        if not self.n:
            return None
        if not self.zones:
            return self.successes / self.n
        # A zone without a check of its own is taken at the rate of all counted checks; its interval is [0, 1].
        shares = [z.successes / z.n if z.n else self.successes / self.n for z in self.zones]
        return sum(z.items * share for z, share in zip(self.zones, shares)) / sum(z.items for z in self.zones)

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.zones:
            return exact_interval(self.successes, self.n)
        if not self.n:
            return None
        # Bonferroni: each zone's interval at 1 - 5%/zones, so all hold together at least 95% of the time.
        confidence = 1 - 0.05 / len(self.zones)
        ends = [exact_interval(z.successes, z.n, confidence) or (0.0, 1.0) for z in self.zones]
        items = sum(z.items for z in self.zones)
        return (sum(z.items * low for z, (low, _) in zip(self.zones, ends)) / items,
                sum(z.items * high for z, (_, high) in zip(self.zones, ends)) / items)


def exact_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Clopper-Pearson interval for a binomial proportion (beta quantiles; the end at 0 or 1 when every
    observation fell one way); None without observations."""
    if n <= 0:
        return None
    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, successes, n - successes + 1)) if successes > 0 else 0.0
    high = float(beta.ppf(1 - tail, successes + 1, n - successes)) if successes < n else 1.0
    return low, high


@dataclass(frozen=True)
class AccuracyEstimate:
    audits: Proportion  # random checks in the auto-accepted range (or, before any region, audits) where the label stood
    human_reviewed: int  # items a person accepted: taken as correct
    auto_accepted: int

    @property
    def auto_accepted_accuracy(self) -> float | None:
        return self.audits.value

    @property
    def auto_accepted_interval(self) -> tuple[float, float] | None:
        return self.audits.interval

    @property
    def dataset_size(self) -> int:
        return self.human_reviewed + self.auto_accepted

    def _mix(self, p: float) -> float:
        return (self.human_reviewed + self.auto_accepted * p) / self.dataset_size

    @property
    def dataset_accuracy(self) -> float | None:
        if not self.dataset_size:
            return None
        if not self.auto_accepted:
            return 1.0
        return None if self.audits.value is None else self._mix(self.audits.value)

    @property
    def dataset_interval(self) -> tuple[float, float] | None:
        if not self.dataset_size:
            return None
        if not self.auto_accepted:
            return 1.0, 1.0
        interval = self.audits.interval
        return None if interval is None else (self._mix(interval[0]), self._mix(interval[1]))


def audit_proportion(*, project: Project, since: datetime | None = None) -> Proportion:
    """Completed audits (optionally those decided after ``since``) and how many kept the LLM's label."""
    audits = Item.objects.filter(
        project=project, is_audit=True, status__in=(Status.ACCEPTED, Status.REJECTED), archived_at__isnull=True
    ).exclude(proposed_labels=[])
    if since is not None:
        audits = audits.filter(reviewed_at__gt=since)
    n = 0
    right = 0
    for status, proposed, final in audits.values_list("status", "proposed_labels", "final_labels").iterator():
        n += 1
        right += status == Status.ACCEPTED and sorted(final) == sorted(proposed)
    return Proportion(successes=right, n=n)


def accuracy_estimate(*, project: Project) -> AccuracyEstimate:
    counts = Item.objects.filter(project=project, archived_at__isnull=True).aggregate(
        human=Count("id", filter=Q(status=Status.ACCEPTED)),
        auto=Count("id", filter=Q(status=Status.AUTO_ACCEPTED)),
    )
    return AccuracyEstimate(
        audits=region_checks(project=project), human_reviewed=counts["human"], auto_accepted=counts["auto"]
    )


# From this many audits in the auto-accepted range on, they alone estimate its accuracy (module docstring).
AUDITS_ALONE = 30


def region_checks(*, project: Project) -> Proportion:
    """The checks in the range the latest round auto-accepts, and how many kept the LLM's label (module docstring)."""
    state = project.routing_state or {}
    if not state.get("phase"):
        return audit_proportion(project=project)
    return region_proportion(state.get("region") or {})


def region_proportion(region: dict) -> Proportion:
    """What a round's ``region`` record (``Project.routing_state["region"]``) lets the page count: per zone (one
    when none is recorded), its audits alone once there are ``AUDITS_ALONE`` of them, else every check in it."""
    zones = region.get("zones") or [region]
    counted = [_counted(zone) for zone in zones]
    kind = "audits" if all(alone for _, _, alone in counted) else "random checks"
    if len(counted) == 1:
        return Proportion(successes=counted[0][0], n=counted[0][1], kind=kind)
    return Proportion(successes=sum(kept for kept, _, _ in counted), n=sum(n for _, n, _ in counted), kind=kind,
                      zones=tuple(Zone(items=int(zone["items"]), successes=kept, n=n)
                                  for zone, (kept, n, _) in zip(zones, counted)))


def _counted(zone: dict) -> tuple[int, int, bool]:
    """(checks that kept the LLM's label, checks counted, whether they are the audits alone) of a zone or region.
    A record written before the calibration split (no ``calibration_checks``) counts every check."""
    n, wrong = int(zone.get("checks") or 0), int(zone.get("wrong") or 0)
    if zone.get("calibration_checks") is not None:
        audits = n - int(zone["calibration_checks"])
        if audits >= AUDITS_ALONE:
            return audits - (wrong - int(zone.get("calibration_wrong") or 0)), audits, True
    return n - wrong, n, False


@dataclass(frozen=True)
class RoutingOverview:
    project: Project
    estimate: AccuracyEstimate
    rounds: list
    running: bool
    reviews_since_last_round: int
    stage: str = ""  # where a running chunked round is, in words


def routing_overview(*, project: Project, rounds: int = 5) -> RoutingOverview:
    """What the lead's routing page shows: policy (on the project), estimates, the latest rounds."""
    # rounds.py imports this module for the audit check; importing it back at call time avoids the cycle.
    from annotation.selection.rounds import selection_reviews_since_last_round

    latest = list(ScoringRound.objects.filter(project=project).order_by("-id")[:rounds])
    running = next((r for r in latest if r.state == ScoringRound.State.RUNNING), None)
    return RoutingOverview(
        project=project,
        estimate=accuracy_estimate(project=project),
        rounds=latest,
        running=running is not None,
        reviews_since_last_round=selection_reviews_since_last_round(project=project),
        stage=_stage(running) if running is not None else "",
    )


def _stage(scoring_round: ScoringRound) -> str:
    """A chunked round's progress: training, chunks scored of all, routing (one count while chunks are scored)."""
    if scoring_round.stage == ScoringRound.Stage.TRAIN:
        return "training on its sample"
    if scoring_round.stage == ScoringRound.Stage.SCORE:
        done = scoring_round.chunk_rows.filter(state="done").count()
        return f"scoring: {done} of {scoring_round.chunks} chunks done"
    if scoring_round.stage == ScoringRound.Stage.ROUTE:
        return "scored; waiting for a worker to route the project"
    if scoring_round.stage == ScoringRound.Stage.ROUTING:
        return "routing the project on its scores"
    return ""


@dataclass(frozen=True)
class RoutingSentences:
    """What the latest round decided (``Project.routing_state``), in the plain sentences every lead page shows."""

    headline: str  # calibrating / unreliable / not yet / reached
    llm: str  # how often the LLM's label stood among the items people checked
    unreliable: bool


def routing_sentences(state: dict) -> RoutingSentences | None:
    """None before the first round that could score the project."""
    phase = state.get("phase")
    if not phase:
        return None
    llm = state.get("llm")
    llm_line = ""
    if llm:
        llm_line = (f"The LLM's labels were right on {llm['right']} of {llm['n']} checked items "
                    f"({llm['right'] / llm['n']:.0%}, 95% interval {llm['low']:.0%}-{llm['high']:.0%}).")
    target = state["target"]
    cohorts = state.get("cohorts") or {}
    several = len(cohorts) > 1
    calibrating = [c for c in cohorts.values() if c.get("calibrating") and not c.get("topping_up")]
    topping = [c for c in cohorts.values() if c.get("topping_up")]
    unreliable = [c for c in cohorts.values() if c.get("unreliable")]
    if phase == "calibrating" and not several:
        calibration = state["calibration"]
        headline = (f"Calibrating: {calibration['done']} of {calibration['size']} items reviewed; nothing is "
                    "auto-accepted until then.")
    elif phase == "calibrating":
        waiting = "; ".join(f"{c['name']}: {c['done']} of {c['size']} reviewed" for c in calibrating)
        headline = (f"Calibrating ({waiting}); their items are not auto-accepted until their calibration sample is "
                    "reviewed.")
    elif phase == "unreliable":
        headline = f"{llm_line} Auto-accept is off; items need people or a better LLM/prompt."
    elif phase == "reached":
        headline = (f"Target {target:.0%} reached with 95% confidence (estimate {state['estimate']:.1%}, lower bound "
                    f"{state['lower_bound']:.1%}), {state['reviews']} reviews so far; reviewing more will not change "
                    "the export.")
    else:
        headline = f"Not yet at the {target:.0%} target: about {state['remaining']} more reviews expected"
        if state.get("lower_bound") is not None:
            headline += f" (now: estimate {state['estimate']:.1%}, lower bound {state['lower_bound']:.1%})"
        headline += "."
    if topping:
        headline += " Items added since calibrating wait for their share of the calibration sample: " + "; ".join(
            f"{c['name']}: {c['done']} of {c['size']} reviewed" for c in topping) + "."
    if unreliable and (several or phase != "unreliable"):
        headline += " Unreliable, so never auto-accepted: " + "; ".join(
            f"{c['name']} (right on {c['right']} of {c['n']} checked)" for c in unreliable) + "."
    if state.get("cap_reached"):
        headline += f" The review cap ({state['cap']} items) is reached: the target cannot be certified within it."
    return RoutingSentences(headline=headline, llm=llm_line, unreliable=phase == "unreliable" or bool(unreliable))
