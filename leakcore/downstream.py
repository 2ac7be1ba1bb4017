"""Downstream impact: how much of a model's measured accuracy comes from leaked evaluation images.

As in the paper: accuracy on the full evaluation split, on its hard- and soft-leaked images, on its
non-leaked images, and on random subsets the size of each leaked set (mean and 95% interval over many
draws), with the gain of each over the full set; leaked images split by whether their training twin has
the same label; a permutation p-value for "leaked differs from random".
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leakcore import leakage, review
from leakcore.errors import InvalidInput, PredictionsMismatch
from leakcore.schema import SplitId, split_ids, split_items

log = logging.getLogger(__name__)

KEY_COLUMNS = ("item_id", "key", "index", "id", "path")
PRED_COLUMNS = ("predicted", "prediction", "pred", "predicted_label", "label")


@dataclass(frozen=True)
class LeakSets:
    """Eval item ids per subset, plus the training twin's label agreement of each leaked item."""

    hard: frozenset
    soft: frozenset
    same_label: frozenset | None  # leaked (soft) items whose matched training image has the same label; None:
    # unknown (an imported list whose training images are in no training split of the workspace)
    source: str  # "decisions + flags", "flags only", or the imported list's file name
    notes: tuple[str, ...] = ()  # what was left out of an imported list, said to the user


def eval_items(ws, eval_split: str) -> pd.DataFrame:
    """Readable items of an evaluation split in source order (numeric keys sorted as numbers)."""
    ev = split_items(ws.items(), eval_split, role="eval")
    keys = pd.to_numeric(ev["key"], errors="coerce")
    order = np.argsort(keys.to_numpy(), kind="stable") if keys.notna().all() else np.argsort(ev["key"].to_numpy(), kind="stable")
    return ev.iloc[order].reset_index(drop=True)


def _class_names(labels: pd.Series) -> list[str]:
    # Integer predictions against named labels: class i is the i-th name in sorted order (torchvision
    # ImageFolder's convention; also CIFAR-10's own order).
    return sorted(labels.dropna().unique())


def load_predictions(path: str | Path, items: pd.DataFrame, *, classes: list[str] | None = None,
                     notes: list | None = None) -> pd.Series:
    """Predicted labels (strings) indexed by item_id, from CSV / Parquet / JSON Lines or a plain JSON list. Keyed
    predictions of images not in the split are left out, and `notes` is told so."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        return _load_predictions(path, suffix, items, classes, notes)
    except PredictionsMismatch:
        raise
    except (ValueError, UnicodeError, OSError) as exc:  # undecodable bytes, not the format its name says, unreadable
        raise PredictionsMismatch(f"{path.name}: cannot read it as {suffix or 'predictions'}: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _load_predictions(path: Path, suffix: str, items: pd.DataFrame, classes, notes: list | None) -> pd.Series:
    if suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise PredictionsMismatch(f"{path.name}: a .json predictions file must be a list of labels in item order")
        if len(data) != len(items):
            example = items["key"].astype(str).iloc[0] if len(items) else "KEY"
            fix = (f"for predictions of other images too (a whole test set against a subset of it), write them as a "
                   f"CSV with a column key (each image's key in the workspace, e.g. {example!r}; CIFAR-10's index) and "
                   "a column prediction: the images not in the split are then left out")
            raise PredictionsMismatch(f"{path.name} has {len(data)} predictions but the split has {len(items)} images: "
                                      "a .json list holds one prediction per image of the split, in its order",
                                      cli=fix, page=fix[0].upper() + fix[1:])
        preds = pd.Series(data, index=items["item_id"].to_numpy())
    else:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            raise PredictionsMismatch(f"{path.name}: predictions must be .csv, .parquet, .jsonl or a .json list")
        key_col = next((c for c in KEY_COLUMNS if c in df.columns), None)
        pred_col = next((c for c in PRED_COLUMNS if c in df.columns and c != key_col), None)
        if key_col is None or pred_col is None:
            raise PredictionsMismatch(f"{path.name} needs a key column ({', '.join(KEY_COLUMNS)}) and a prediction column "
                                      f"({', '.join(PRED_COLUMNS)}); it has {', '.join(map(str, df.columns))}")
        lookup = {"item_id": items["item_id"], "key": items["key"], "index": items["key"], "id": items["key"],
                  "path": items["uri"]}[key_col]
        key_to_id = dict(zip(lookup.astype(str), items["item_id"]))
        keys = df[key_col].astype(str)
        if key_col == "path":
            key_to_id.update({Path(u).name: i for u, i in zip(items["uri"], items["item_id"])})
        inside = keys.isin(key_to_id).to_numpy()
        preds = pd.Series(df[pred_col].to_numpy()[inside], index=[key_to_id[k] for k in keys[inside]])
        absent = len(set(items["item_id"]) - set(preds.index))
        if absent:
            extra = "" if inside.all() else (f"; {int((~inside).sum())} of its keys match no item of the split "
                                             f"(first: {keys[~inside].head(3).tolist()})")
            raise PredictionsMismatch(f"{path.name} covers {int(inside.sum())} items; {absent} items of the split have "
                                      f"no prediction{extra}")
        # predictions of a whole test set for a subset of it (a cleaned split, a sample): the others are left out, and
        # said (they were refused: "77 keys match no item of the split")
        if not inside.all() and notes is not None:
            notes.append(f"{path.name}: {int((~inside).sum())} of its {len(keys)} predictions are of images not in "
                         "the split; left out")  # `said_once` reads these words
    preds = preds.astype(object)
    labels = items.set_index("item_id")["label"]
    if all(isinstance(v, (int, np.integer)) or (isinstance(v, str) and v.isdigit()) for v in preds.to_numpy()) and \
            not labels.astype(str).str.isdigit().all():
        names = classes or _class_names(labels)
        preds = preds.map(lambda v: names[int(v)] if 0 <= int(v) < len(names) else str(v))
    return preds.astype(str).reindex(items["item_id"])


def said_once(notes: list[str]) -> tuple[str, ...]:
    """Notes as they are, but one for many prediction files left with the same part out (30 files of a whole
    test set against a subset of it said the same line 30 times)."""
    pattern = re.compile(r"^(.*): (\d+) of its (\d+) predictions are of images not in the split; left out$")
    found = [pattern.match(n) for n in notes]
    counts = pd.Series([(m.group(2), m.group(3)) for m in found if m]).value_counts() if any(found) else None
    out, said = [], set()
    for note, m in zip(notes, found):
        if m is None or counts[(m.group(2), m.group(3))] == 1:
            out.append(note)
        elif (m.group(2), m.group(3)) not in said:
            said.add((m.group(2), m.group(3)))
            n = counts[(m.group(2), m.group(3))]
            out.append(f"{n} prediction files: {m.group(2)} of each one's {m.group(3)} predictions are of images not "
                       "in the split; left out")
    return tuple(out)


def leak_sets(ws, eval_split: str, *, use_decisions: bool = True) -> LeakSets:
    """Hard / soft leaked items of a split over all training sources; decisions first unless told otherwise."""
    decisions = review.latest_decisions(ws) if use_decisions else None
    flagged = leakage.flagged_items(ws, decisions=decisions)
    flagged = flagged[flagged["eval_split"] == str(eval_split)]
    labels = ws.items().set_index("item_id")["label"]
    soft = flagged[flagged["degree"].isin(["hard", "soft"])]
    same = soft[soft["eval_item_id"].map(labels).to_numpy() == soft["train_item_id"].map(labels).to_numpy()]
    return LeakSets(frozenset(flagged.loc[flagged["degree"] == "hard", "eval_item_id"]), frozenset(soft["eval_item_id"]),
                    frozenset(same["eval_item_id"]), "decisions + flags" if use_decisions else "flags only")


def imported_leak_sets(ws, eval_split: str, csv_path: str | Path, train_split: str | None = None) -> LeakSets:
    """A human-labelled list of (eval key, train key) pairs, e.g. ciFAIR's (TestID, TrainID), as leak sets."""
    try:
        df = pd.read_csv(csv_path)
    except (ValueError, UnicodeError) as exc:  # undecodable bytes, not a CSV
        raise PredictionsMismatch(f"cannot read the leak list as CSV: {type(exc).__name__}: {str(exc)[:200]}") from None
    if len(df.columns) < 2:
        raise PredictionsMismatch("a leak list needs two columns: the evaluation key and the training key")
    eval_col = next((c for c in ("eval_key", "TestID", "eval_item_id", "test") if c in df.columns), df.columns[0])
    train_col = next((c for c in ("train_key", "TrainID", "train_item_id", "train") if c in df.columns), df.columns[1])
    items = ws.items()
    ds = SplitId.parse(eval_split).dataset
    train_split = train_split or next((sid for sid in split_ids(items, "train") if sid.dataset == ds), None)

    def train_ids(keys):
        """Item ids of the list's training keys where the evaluation split's dataset has no training split (a
        cleaned split added as a dataset of its own): full item ids, or keys found in exactly one training split.
        Keys found nowhere are refused, as the evaluation keys are (a made-up key was taken silently)."""
        train = items[items["role"] == "train"]
        known = set(train["item_id"].astype(str))
        by_key = train.groupby(train["key"].astype(str))["item_id"].agg(list)
        out, missing = [], []
        for k in keys:
            k = str(k)
            found = k if k in known else (by_key[k][0] if k in by_key.index and len(by_key[k]) == 1 else None)
            out.append(found)
            if found is None:
                missing.append(k)
        if missing:
            splits = ", ".join(str(s) for s in split_ids(items, "train")) or "none"
            raise PredictionsMismatch(
                f"{Path(csv_path).name}: {len(missing)} training keys are in no training split (e.g. {missing[0]!r}; "
                f"training splits: {splits}); give them as item ids 'DATASET/SPLIT/KEY' where a key is in several")
        return out

    def ids(split, keys, *, some: bool = False):
        """Item ids for a list's keys: as written, relative to the split (a "test/x.jpg" key of a split "test"
        loses its prefix), or full item ids ("dataset/split/key"); the error says which forms were tried. With
        `some`, keys not in the split are None where at least one key is in it."""
        sid = SplitId.parse(split)
        sub = split_items(items, split)
        m = dict(zip(sub["key"].astype(str), sub["item_id"]))
        m.update({str(i): i for i in sub["item_id"]})
        prefix = f"{sid.split}/"
        out = [m.get(str(k)) or (m.get(str(k)[len(prefix):]) if str(k).startswith(prefix) else None) for k in keys]
        missing = [str(k) for k, o in zip(keys, out) if o is None]
        if missing and not (some and len(missing) < len(out)):
            raise PredictionsMismatch(
                f"{Path(csv_path).name}: {len(missing)} keys are not in {split} (e.g. {missing[0]!r}); tried each key "
                f"as written, without a leading '{prefix}', and as an item id '{sid}/KEY'")
        return out

    # a list of a whole benchmark (ciFAIR's 286 pairs) against a subset of its split: the pairs of images not in the
    # split are left out, and said (every one of them refused it: "225 keys are not in cifar10/test")
    ev = ids(eval_split, df[eval_col], some=True)
    notes = ()
    if None in ev:
        inside = [e is not None for e in ev]
        notes = (f"{Path(csv_path).name}: {inside.count(False)} of its {len(ev)} pairs name an evaluation image that "
                 f"is not in {eval_split}; left out",)
        df, ev = df[inside].reset_index(drop=True), [e for e in ev if e is not None]
    labels = items.set_index("item_id")["label"]
    same = None
    if train_split is not None:
        tr = ids(train_split, df[train_col])
    elif (items["role"] == "train").any():
        tr = train_ids(df[train_col])
    else:
        tr = None  # no training split to look the keys up in: whether labels agree is not known
    if tr is not None:
        same = frozenset(e for e, t in zip(ev, tr) if labels.get(e) == labels.get(t))
    return LeakSets(frozenset(), frozenset(ev), same, Path(csv_path).name, notes)


RANDOM_COLUMNS = ("random_mean", "random_low", "random_high", "p_value")


def impact(
    correct: pd.DataFrame,
    leaks: LeakSets,
    *,
    n_random: int = 1000,
    seed: int = 0,
    mean_over: "list[str] | None" = None,
) -> pd.DataFrame:
    """Accuracy per model and subset, gain vs full, random-subset mean and 95% interval, two-sided permutation
    p-value (`_two_sided_p`); the leaked subsets' rows also carry mean_random_mean, mean_random_low,
    mean_random_high and mean_p_value: those of the mean over models (`summary`), the same on each model's row.
    `mean_over`: the models that mean is over (`in_mean` on their rows; default every one): the real models, not the
    built-in probes (`mean_models`), which are shown beside them.

    `correct` is a bool DataFrame: rows = models, columns = eval item ids (all readable items of the split).
    """
    if n_random < 1:
        raise InvalidInput("n_random must be at least 1")
    C = correct.to_numpy(dtype=bool)
    ids = np.asarray(correct.columns)
    in_mean = np.ones(len(correct), bool) if mean_over is None else np.isin(np.asarray(correct.index, dtype=object),
                                                                            list(mean_over))
    if not in_mean.any():
        in_mean[:] = True
    full = C.mean(axis=1)
    rng = np.random.default_rng(seed)
    rows = []
    subsets = {"hard-leaked": leaks.hard, "soft-leaked": leaks.soft}
    same = np.isin(ids, list(leaks.same_label or ()))
    for name, members in subsets.items():
        mask = np.isin(ids, list(members))
        m = int(mask.sum())
        if m == 0:
            continue
        acc = C[:, mask].mean(axis=1)
        # m-subsets drawn uniformly without replacement: the first m of a random permutation per draw.
        draws = np.argsort(rng.random((n_random, len(ids))), axis=1)[:, :m]
        rand = C[:, draws].mean(axis=2)  # models x draws
        lo, hi = np.percentile(rand, [2.5, 97.5], axis=1)
        centre = rand.mean(axis=1)
        p = _two_sided_p(rand, acc)
        # the mean over models has its own random distribution: the mean over models of each draw (averaging the
        # models' intervals and p-values gave a mean of 99.6%, above its averaged interval's top of 97.6%, at p 0.07)
        over = rand[in_mean].mean(axis=0)
        mean_lo, mean_hi = np.percentile(over, [2.5, 97.5])
        mean_p = float(_two_sided_p(over[None], acc[in_mean].mean()[None])[0])
        for i, model in enumerate(correct.index):
            rows.append({"model": model, "subset": name, "n": m, "accuracy": acc[i], "gain": acc[i] - full[i],
                         "random_mean": centre[i], "random_low": lo[i], "random_high": hi[i], "p_value": p[i],
                         "mean_random_mean": float(over.mean()), "mean_random_low": float(mean_lo),
                         "mean_random_high": float(mean_hi), "mean_p_value": mean_p, "in_mean": bool(in_mean[i])})
        if name == "soft-leaked" and leaks.same_label is not None:
            for agree, sel in (("same label", mask & same), ("different label", mask & ~same)):
                if sel.any():
                    a = C[:, sel].mean(axis=1)
                    for i, model in enumerate(correct.index):
                        rows.append({"model": model, "subset": f"soft-leaked, {agree}", "n": int(sel.sum()),
                                     "accuracy": a[i], "gain": a[i] - full[i], "in_mean": bool(in_mean[i])})
    clean = ~np.isin(ids, list(leaks.soft | leaks.hard))
    for name, sel in (("full", np.ones(len(ids), bool)), ("non-leaked", clean)):
        a = C[:, sel].mean(axis=1) if sel.any() else np.full(len(correct), np.nan)
        for i, model in enumerate(correct.index):
            rows.append({"model": model, "subset": name, "n": int(sel.sum()), "accuracy": a[i], "gain": a[i] - full[i],
                         "in_mean": bool(in_mean[i])})
    out = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(["full", "hard-leaked", "soft-leaked", "soft-leaked, same label",
                                         "soft-leaked, different label", "non-leaked"])}
    return out.sort_values(["model", "subset"], key=lambda c: c.map(order) if c.name == "subset" else c).reset_index(drop=True)


def _two_sided_p(rand: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Two-sided permutation p-value of each row's accuracy `acc` against its random draws `rand` (rows x draws):
    twice the smaller tail's share (the draws at least as high, or at least as low), at most 1. Equal-tailed, as the
    2.5-97.5% interval is, so an accuracy outside the interval has p < 0.05 (counting the draws as far from their
    mean in either direction gave p 0.06 to a model at 100% above an interval ending at 98.7%: near 100% the draws
    reach further below their mean than above it)."""
    n = rand.shape[1]
    above = (rand >= acc[:, None] - 1e-12).sum(axis=1)
    below = (rand <= acc[:, None] + 1e-12).sum(axis=1)
    return np.minimum(1.0, 2 * (1 + np.minimum(above, below)) / (1 + n))


def correctness(items: pd.DataFrame, predictions: dict[str, pd.Series]) -> pd.DataFrame:
    """Bool DataFrame (models x item ids): prediction equals the item's label."""
    labels = items.set_index("item_id")["label"].astype(str)
    return pd.DataFrame({name: (p.reindex(labels.index).astype(str) == labels) for name, p in predictions.items()}).T


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over models per subset: accuracy, gain, and the random interval and p-value of that mean (the headline
    table; `impact`'s mean_* columns: the mean over models of each random draw, not the mean of the models'
    intervals and p-values)."""
    if "in_mean" in table:  # the models the mean is over (not the built-in probes, where there are models)
        table = table[table["in_mean"].astype(bool)]
    cols = [c for c in ("n", "accuracy", "gain", "random_mean", "random_low", "random_high", "p_value") if c in table]
    out = table.groupby("subset", sort=False)[cols].mean().reset_index()
    if "mean_p_value" in table:
        of_mean = table.groupby("subset", sort=False)[[f"mean_{c}" for c in RANDOM_COLUMNS]].first()
        for c in RANDOM_COLUMNS:
            out[c] = out["subset"].map(of_mean[f"mean_{c}"]).to_numpy()
    if "n" in out:  # a count, the same for every model: printed as one ("153", not "153.0000")
        out["n"] = out["n"].round().astype(int)
    return out


PROBE_PREFIX = "probe-"  # the built-in probes' predictions are named so (`probe_predictions`)


def mean_models(names) -> list[str]:
    """The models a mean over models is over: the real ones (not the built-in probes: a k-NN probe remembers by
    construction, and averaged in it moved a new user's "mean over models" from 92.96% to 91.72% and the leaked
    set's gain from +6.7 to +8.0 points), or the probes where there is nothing else."""
    names = list(names)
    return [n for n in names if not str(n).startswith(PROBE_PREFIX)] or names


def knn_probe(ws, eval_split: str, train_split: str, *, k: int = 1, encoder=None) -> pd.Series:
    """Predictions of a k-NN classifier over the training embeddings (k=1, or distance-weighted vote):
    a model that can only remember, so its accuracy on leaked items measures memorisation directly."""
    from leakcore import search
    from leakcore.embed import embed_items
    from leakcore.encoders import create_encoder

    encoder = encoder or create_encoder(ws.encoder, **ws.encoder_options)
    ev, tr = eval_items(ws, eval_split), split_items(ws.items(), train_split)
    qv, qok = embed_items(ws, ev, encoder)
    cv, cok = embed_items(ws, tr, encoder)
    tr_labels = tr["label"].astype(str).to_numpy()[cok]
    sim, idx = search.knn(qv, cv[cok], k)
    if k == 1:
        pred = tr_labels[idx[:, 0]]
    else:
        weights = np.exp(sim / 0.07)  # softmax-like weighting of close neighbours
        classes, inv = np.unique(tr_labels, return_inverse=True)
        votes = np.zeros((len(ev), len(classes)))
        np.add.at(votes, (np.repeat(np.arange(len(ev)), k), inv[idx].ravel()), weights.ravel())
        pred = classes[votes.argmax(axis=1)]
    out = pd.Series(pred, index=ev["item_id"].to_numpy(), dtype=object)
    out[~qok] = None
    return out


def clip_zero_shot(ws, eval_split: str, *, class_names: list[str] | None = None, template: str = "a photo of a {}.",
                   pretrained: str | None = None, weights: str | None = None, random_weights: bool = False,
                   batch_size: int = 64) -> pd.Series:
    """Zero-shot CLIP ViT-B/32 classification from class names (the split's labels by default).

    Needs CLIP weights (an open_clip tag in the local cache, or a checkpoint); `random_weights` is for tests only.
    """
    import open_clip
    import torch

    from leakcore import catalog, images
    from leakcore.encoders import default_device
    from leakcore.encoders.torch_models import _clip_weights
    from leakcore.encoders.base import CLIP_MEAN, CLIP_STD

    source = None if random_weights else _clip_weights(pretrained, weights)[0]
    device = default_device()
    model = open_clip.create_model("ViT-B-32", pretrained=source).eval().to(device)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    ev = eval_items(ws, eval_split)
    names = class_names or _class_names(ev["label"])
    with torch.inference_mode():
        text = model.encode_text(tokenizer([template.format(n.replace("_", " ")) for n in names]).to(device))
        text = torch.nn.functional.normalize(text.float(), dim=-1)
        mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
        preds: list[str | None] = []
        for start in range(0, len(ev), batch_size):
            chunk = ev.iloc[start:start + batch_size]
            arrays, ok = [], []
            for uri, row in zip(chunk["uri"], chunk["row"]):
                img = images.decode(catalog.read_bytes(uri, int(row), reader=ws.sources), draft_size=(224, 224)).image
                ok.append(img is not None)
                if img is not None:
                    arrays.append(np.asarray(img.resize((224, 224)), dtype=np.uint8))
            out = iter([])
            if arrays:
                x = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2).float().div(255)
                feats = torch.nn.functional.normalize(model.encode_image((x - mean) / std).float(), dim=-1)
                out = iter((feats @ text.T).argmax(dim=1).cpu().numpy())
            preds.extend(names[next(out)] if good else None for good in ok)
    return pd.Series(preds, index=ev["item_id"].to_numpy(), dtype=object)


PROBES = ("knn1", "knn20", "clip")  # built-in models an impact request may ask for


def probe_predictions(ws, eval_split: str, probes) -> dict[str, pd.Series]:
    """Predictions of the built-in probes on `eval_split`, by model name: `knn1` / `knn20` (nearest training
    neighbours in the dataset's own training split) and `clip` (zero-shot)."""
    out = {}
    for probe in probes:
        if probe not in PROBES:
            raise InvalidInput(f"unknown probe {probe}; valid probes: {', '.join(PROBES)}")
        if probe == "clip":
            out[f"{PROBE_PREFIX}clip-zero-shot"] = clip_zero_shot(ws, eval_split)
            continue
        train, name = _probe_training_split(ws, eval_split, probe), f"{PROBE_PREFIX}{probe}"
        if train.dataset != SplitId.parse(eval_split).dataset:  # another dataset's: named with the model
            name += f" ({train})"
        out[name] = knn_probe(ws, eval_split, str(train), k=1 if probe == "knn1" else 20)
    return out


def _probe_training_split(ws, eval_split: str, probe: str) -> SplitId:
    """The training split a k-NN probe remembers: the evaluation split's own dataset's; where that dataset has none
    (a test set kept apart from its training data), the workspace's one training split whose labels cover the
    evaluation split's; else an error saying what to do."""
    items = ws.items()
    dataset = SplitId.parse(eval_split).dataset
    trains = split_ids(items, "train")
    own = next((t for t in trains if t.dataset == dataset), None)
    if own is not None:
        return own
    wanted = set(eval_items(ws, eval_split)["label"].dropna().astype(str))
    covering = [t for t in trains if wanted and wanted <= set(
        items[(items["dataset"] == t.dataset) & (items["split"] == t.split)]["label"].dropna().astype(str))]
    if len(covering) == 1:
        return covering[0]
    why = ("no training split of the workspace has all its labels" if not covering else
           f"{len(covering)} training splits of other datasets have its labels ({', '.join(map(str, covering))})")
    raise InvalidInput(f"the {probe} probe remembers a training split, and {dataset} has none; {why}",
                       cli="measure it with your model's own predictions (--predictions FILE)",
                       page="Measure it with your model's own predictions (upload them)")


def default_eval_split(ws) -> str:
    """The workspace's one evaluation split; an error naming them when there are several (or none)."""
    evals = split_ids(ws.items(), "eval")
    if len(evals) != 1:
        raise InvalidInput(f"this workspace has {len(evals)} evaluation splits ({', '.join(map(str, evals)) or 'none'})",
                           cli="pass --split DATASET/SPLIT", page="Choose the evaluation split")
    return str(evals[0])
