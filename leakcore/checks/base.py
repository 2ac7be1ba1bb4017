"""What a check is (the base class and the findings table) and the registry checks enter; see `leakcore.checks`.

A check owns everything about itself: its findings (one schema, `FINDING_COLUMNS`), its rates, its words (how
its degrees, its score and its rates read on a page, in a report and in a terminal), how its findings are
reviewed (`review`: as pairs of images, as groups, or not at all), which evaluation items an export removes for
it (`removals`), and its bound in the CI gate (`gate`). Review, export, report, the gate and the heatmaps iterate
the registered checks and never name one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

FINDING_COLUMNS = {
    "check": "string", "eval_split": "string", "train_split": "string", "eval_item_id": "string",
    "train_item_id": "string", "score": "float32", "degree": "string", "decision": "string", "reason": "string",
}
# what an export's plan records for each removed item, whichever check removed it
# (`confirmed`: a curator confirmed it, so a keep-list does not override it)
REMOVAL_COLUMNS = ["item_id", "check", "reason", "matches", "similarity", "degree", "decision", "confirmed"]
CONFIRMING = ("hard", "soft", "same_source")  # decisions that confirm a finding


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FINDING_COLUMNS.items()})


def empty_removals() -> pd.DataFrame:
    return pd.DataFrame(columns=REMOVAL_COLUMNS)


@dataclass(frozen=True)
class CheckInputs:
    """What a check reads besides the workspace: thresholds in force, decisions (None: automatic only),
    and tables a caller already holds (so a page does not read them twice)."""

    hard: float
    soft: float
    decisions: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    encoder: str | None = None
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # what several checks derive alike


@dataclass(frozen=True)
class Words:
    """How a check reads. `hard`/`soft`: what each degree means for one image (a report's rows); `score`: what
    its score is ("" when it has none) and `strong`: whether a high or a low score is the stronger finding;
    `hard_title`/`soft_title`: the heatmaps' titles; `caption`: what a rate of this check is a share of (a
    heatmap's caption; "{hard}" and "{soft}" are the thresholds in force); `verdict`: what the images an
    evaluation split's verdict counts did (after "N (P%)"); `review`: what the Review page's choice says;
    `title`: what the check finds, as a heading ("Label conflicts"; the check's name when empty)."""

    title: str = ""
    hard: str = "hard"
    soft: str = "soft"
    score: str = "score"
    strong: str = "high"
    hard_title: str = "Hard leakage"
    soft_title: str = "Soft leakage"
    caption: str = ""
    verdict: str = ""
    review: str = ""


class Check:
    """A leak check. Subclasses set `name`, `kind`, `description` (and `words`, `review`) and implement `findings`
    and `rates`; `removals`, `review_rows` and `gate` have generic forms built on the findings."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "pairs": eval item -> training item; "groups": eval item -> a group reaching training data
    description: ClassVar[str]
    in_rates: ClassVar[bool] = True  # False: findings on request only (an audit too costly for every page load)
    words: ClassVar[Words] = Words()
    # how the Review page shows its findings: "pairs" (two images side by side, the pair decisions), "groups"
    # (a group across splits), or None (not reviewed one by one: an audit's results have their own page)
    review: ClassVar[str | None] = None
    exportable: ClassVar[bool] = True  # an export can remove the evaluation items it flags
    export_default: ClassVar[bool] = False  # ... and does unless asked not to

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """Every eval item (or pair) this check flags, with FINDING_COLUMNS."""
        raise NotImplementedError

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """Counts and rates per (eval split x training source), with a `check` column."""
        raise NotImplementedError

    def removals(self, ws, eval_split: str, inputs: CheckInputs, policy) -> pd.DataFrame:
        """The evaluation items of `eval_split` an export removes for this check (`REMOVAL_COLUMNS`), at the
        policy's level of automatic flags (`policy.flags`: "hard", "soft" or "none"). Generic form: a finding a
        curator confirmed always removes its item; one a curator rejected never does; the others at their degree."""
        flags = policy.flags
        f = self.findings(ws, inputs)
        f = f[f["eval_split"] == eval_split]
        if f.empty:
            return empty_removals()
        level = {"hard": ("hard",), "soft": ("hard", "soft"), "none": ()}[flags]
        confirmed = f["decision"].isin(CONFIRMING)
        auto = f["decision"].isna() | (f["decision"] == "unsure")
        keep = f[confirmed | (auto & f["degree"].isin(level))].copy()
        if keep.empty:
            return empty_removals()
        keep["_c"] = keep["decision"].isin(CONFIRMING)
        keep = keep.sort_values(["_c", "score"], ascending=[False, self.words.strong == "low"], kind="stable")
        matches = keep.groupby("eval_item_id", sort=False)["train_item_id"].agg(lambda s: ";".join(dict.fromkeys(s)))
        first = keep.drop_duplicates("eval_item_id")
        return pd.DataFrame({
            "item_id": first["eval_item_id"].to_numpy(), "check": self.name,
            "reason": [("confirmed: " if c else "") + r for c, r in zip(first["_c"], first["reason"])],
            "matches": matches.reindex(first["eval_item_id"]).to_numpy(),
            "similarity": first["score"].to_numpy(dtype=float), "degree": first["degree"].to_numpy(),
            "decision": first["decision"].to_numpy(), "confirmed": first["_c"].to_numpy()})

    def review_rows(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """For a check reviewed as pairs: its findings as rows of the review queue (eval_item_id, train_item_id,
        eval_split, train_split, similarity, degree, within, ...); see `leakcore.checks.review_queue`."""
        return pd.DataFrame()

    def gate(self, table: pd.DataFrame, bounds: dict[str, float]) -> list[str]:
        """Messages for every evaluation split whose overall rate (percent) is above a bound: `bounds` maps a
        degree ("hard" or "soft"; soft counts every finding) to a percentage."""
        from leakcore.leakage import ALL_SOURCES

        overall = table[(table["train_split"] == ALL_SOURCES)]
        if "check" in overall.columns:
            overall = overall[overall["check"] == self.name]
        out = []
        for r in overall.itertuples():
            for degree in ("hard", "soft"):
                bound = bounds.get(degree)
                rate = 100 * getattr(r, f"{degree}_rate")
                if bound is not None and rate > bound:
                    what = self._gate_words(degree)
                    out.append(f"{r.eval_split}: {what} {rate:.2f}% > {bound}%")
        return out

    def _gate_words(self, degree: str) -> str:
        return f"{self.name} leakage" if degree == "soft" else f"{self.name} leakage ({degree})"


_REGISTRY: dict[str, Check] = {}


def register_check(cls: type[Check]) -> type[Check]:
    """Class decorator: register one instance of a check under its name."""
    if cls.name in _REGISTRY:
        raise ValueError(f"check {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls
