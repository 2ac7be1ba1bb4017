"""The fused score as a score strategy (`FusedScore`) and what scoring pairs with it needs: the fitted model
(`FusedModel`, an estimator in scikit-learn's manner), loading it (`load`), the second copy-detection model's opinion
(`SecondOpinion`) and the rule by which verified local matches decide. Fitting it, the fitting set and the choice
of its thresholds are `leakcore.fused`'s; this module imports neither that nor the leakage tables, so that reading
pairs (`leakage.load_pairs`) reaches it without a cycle.
"""
from __future__ import annotations

import json
import logging
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from leakcore import verify
from leakcore.verify import (  # noqa: F401  (the thresholds of the rules by which evidence decides a pair on its
    # own live with the evidence, which reads them too: no crop search where the local matches decide)
    MATCH_RULE, TWIN_CROP_DETAIL, TWIN_CROP_NCC, TWIN_ORB_INLIERS, TWIN_ORB_RATIO, TWIN_TILES_AGREE)
from leakcore.scores.base import Score
from leakcore.scores.logistic import CalibratedLogistic

log = logging.getLogger(__name__)

MODEL_FORMAT = 3  # model.json's layout: 2 adds "format" and "params" (1, unmarked: the parameters in "meta"); 3 holds
# the fitted numbers ("model"), where 1 and 2 kept them in a pickle beside it (model.joblib), which is no longer read
SECOND_INPUT_SIZE = 128  # the second model's input size: on the pairs judged on CIFAR-10, 128, 160 and the mirrored
# eval image too all separate alike within noise (out-of-fold AUC 0.969-0.970), and 128 unmirrored costs 40% of that
SECOND_FEATURE = "similarity_2"


class FusedModel:
    """P(same photograph) of a pair from its features (the raw similarity and the pixel evidence): a logistic
    regression on standardised features calibrated by a sigmoid over held-out folds (`logistic.CalibratedLogistic`,
    scikit-learn's `CalibratedClassifierCV` in numpy), and the thresholds chosen for it. An estimator in
    scikit-learn's manner (`sklearn.base.clone` copies its parameters):

    - parameters, set in `__init__` only (`get_params` / `set_params`): `encoder` (whose similarity it reads),
      `features` (the columns it reads, in order) and `cv` (calibration folds; None: five, fewer when the rarer
      class is too small for five);
    - learned by `fit(X, y)`: `model_` (the fitted `CalibratedLogistic`), `classes_`, `n_features_in_`;
    - chosen after the fit on held-out pairs (`leakcore.fused.fit`) and set by `set_thresholds`: `hard_`, `soft_`,
      `candidate_` (pairs at or above this raw similarity are verified) and `meta_`, how it was fitted (AUCs, the
      threshold rule, the second model and its cache, the decisive-matches rule: what `model.json` and the report
      show).

    `predict` gives P(same photograph) per pair (a score, as a regressor's `predict` does; 0 where a pair has no
    evidence, at least `hard_` where its local matches decide); `predict_proba` the two-column form."""

    def __init__(self, encoder: str | None = None, features: tuple[str, ...] = verify.FEATURES, cv: int | None = None):
        self.encoder = encoder
        self.features = features
        self.cv = cv

    def get_params(self, deep: bool = False) -> dict:
        return {"encoder": self.encoder, "features": self.features, "cv": self.cv}

    def set_params(self, **params) -> "FusedModel":
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"FusedModel has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def _matrix(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            return X[list(self.features)].to_numpy(dtype=np.float64)
        return np.asarray(X, dtype=np.float64)

    def fit(self, X, y) -> "FusedModel":
        """Fit the calibrated model on X (a frame with the `features` columns, or their matrix) and y (1: one
        photograph, 0: not); returns self."""
        x, y = self._matrix(X), np.asarray(y, dtype=int)
        with threadpool_limits(1):  # small fits: BLAS threads on a busy machine made them 20x slower
            self.model_ = _estimator(self.cv or _folds(y)).fit(x, y)
        self.classes_ = self.model_.classes_
        self.n_features_in_ = x.shape[1]
        return self

    def set_thresholds(self, hard: float, soft: float, candidate: float, meta: dict | None = None) -> "FusedModel":
        """Set the thresholds chosen for the fitted model (and how it was fitted); returns self."""
        self.hard_, self.soft_, self.candidate_ = float(hard), float(soft), float(candidate)
        self.meta_ = dict(meta or {})
        return self

    def predict_proba(self, X) -> np.ndarray:
        """[P(not), P(same photograph)] per row; a row with a missing feature (no evidence) is [1, 0]."""
        x = self._matrix(X)
        ok = ~np.isnan(x).any(axis=1)
        out = np.tile([1.0, 0.0], (len(x), 1))
        if ok.any():
            out[ok] = self.model_.predict_proba(x[ok])
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(same photograph) per row with the model's feature columns; 0 where a pair has no evidence."""
        x = frame[list(self.features)].to_numpy(dtype=np.float64)
        ok = ~np.isnan(x).any(axis=1)
        out = np.zeros(len(frame))
        if ok.any():
            out[ok] = self.model_.predict_proba(x[ok])[:, 1]
        return self.floor(frame, out)

    def floor(self, frame: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        """`scores` of `frame`'s pairs with this model's decisive rules applied (`floor_matched`)."""
        m = self.meta_
        return floor_matched(frame, scores, self.hard_, m.get("decisive_matches"), m.get("decisive_pixels"),
                             m.get("decisive_crop"), soft=self.soft_, raw_hard=m.get("hard_needs_raw"))

    def contributions(self, row: pd.Series | dict) -> pd.DataFrame:
        """Per feature: its value and its contribution to the log-odds (mean over the calibrated folds)."""
        x = np.array([float(row[f]) for f in self.features])
        c = self.model_.contributions(x)
        return pd.DataFrame({"feature": self.features, "value": x, "contribution": c}).sort_values(
            "contribution", key=np.abs, ascending=False, ignore_index=True)

    # ---- stored form (model.json) --------------------------------------------------------------------------------
    def to_stored(self) -> dict:
        """What model.json holds: its format, the parameters, the thresholds, `meta_` and the fitted numbers."""
        params = {**self.get_params(), "features": list(self.features)}
        return {"format": MODEL_FORMAT, "params": params, "hard": self.hard_, "soft": self.soft_,
                "candidate": self.candidate_, "meta": self.meta_, "model": self.model_.to_json()}

    @classmethod
    def from_stored(cls, encoder: str, stored: dict) -> "FusedModel":
        """The model of a model.json (`to_stored`)."""
        fmt = stored.get("format", 1)
        if fmt > MODEL_FORMAT:
            from leakcore.errors import InvalidInput

            raise InvalidInput(f"the fused model of {encoder} was stored in format {fmt}, newer than this version "
                               f"reads ({MODEL_FORMAT})", cli="upgrade leakcore, or fit it again: `leakcore verify DIR "
                                                                 "--refit`")
        params = stored["params"]
        fm = cls(**{**params, "features": tuple(params["features"])})
        model = CalibratedLogistic.from_json(stored["model"])
        fm.model_, fm.classes_, fm.n_features_in_ = model, model.classes_, len(fm.features)
        return fm.set_thresholds(stored["hard"], stored["soft"], stored["candidate"], stored["meta"])

    # ---- read-only names of the fitted model, for callers ------------------------------------------------------
    @property
    def hard(self) -> float:
        return self.hard_

    @property
    def soft(self) -> float:
        return self.soft_

    @property
    def candidate(self) -> float:
        return self.candidate_

    @property
    def meta(self) -> dict:
        return self.meta_

    @property
    def model(self):
        return self.model_

    @property
    def key(self) -> str:
        return self.meta_.get("key", "")

    def fitting_counts(self) -> dict:
        """What the model was fitted on, counted once for every reader (the CLI's line, the Thresholds page's
        caption): `pairs` in all, of them `suite` pairs of the `queries` training images edited and `lookalikes`
        pairs of the collection's own nearest neighbours, plus `decisions` curator decisions."""
        m = self.meta_
        pairs, alike = int(m.get("suite_pairs") or 0), int(m.get("lookalike_pairs") or 0)
        return {"pairs": pairs, "suite": pairs - alike, "queries": int(m.get("queries") or 0), "lookalikes": alike,
                "decisions": int(m.get("decisions_used") or 0)}

    @property
    def second(self) -> str | None:
        """The second model's encoder name, when the fit had one."""
        return self.meta_.get("second_encoder")


# ---- a second model's opinion ----------------------------------------------------------------------------------
def second_encoder_name(primary: str) -> str:
    """The other SSCD model: the distilled student asks its ResNet-50 teacher, every other encoder the student."""
    return "sscd" if primary == "sscd-distilled" else "sscd-distilled"


def small_images(ws) -> bool:
    """Whether the training images are too small for local features (the opposite of `Workspace.photos`: median
    shorter side under verify.ORB_MIN_SIDE, under which a pair gets none, as CIFAR-10's): there the second model stands
    in for them. On photos ORB's matches carry that evidence, and the second model (ResNet-50 at 128 px) cost about as much
    per image as the scan's own embedding: on 3,200 pet photos 73 s of a 187 s scan."""
    return not ws.photos()


class SecondOpinion:
    """The cosine similarity of a pair by a second copy-detection model at SECOND_INPUT_SIZE, the images as they
    are (the pixel alignment covers mirrors and turns). Vectors of stored items go to the workspace's embedding
    cache (resumable, shared with any scan by that model); edited images of the fitting suite are embedded in
    memory."""

    def __init__(self, ws, name: str, stored: tuple[str, str, int] | None = None):
        self.ws, self.name = ws, name
        self._stored = stored  # (encoder name, fingerprint, dim) of its cache, from a fitted model's meta

    @classmethod
    def of_model(cls, ws, fm: "FusedModel") -> "SecondOpinion":
        """The second model of a fitted fused model: its cache is read without building the encoder."""
        stored = fm.meta_.get("second_caches")  # a list of one (load() refuses the older models that had two)
        return cls(ws, fm.second, tuple(stored[0]) if stored else None)

    def cache(self) -> tuple[str, str, int]:
        """(encoder name, fingerprint, dim) of the embedding cache its vectors are in."""
        if self._stored:
            return self._stored
        enc = self.encoder()
        return enc.name, enc.fingerprint, enc.spec.dim

    @classmethod
    def for_workspace(cls, ws, primary: str) -> "SecondOpinion | None":
        """The second model for a workspace's encoder, or None when its weights are not here or the training
        images are photos (the fused score then goes without it)."""
        from leakcore.errors import LeakcoreError

        if not small_images(ws):
            return None
        opinion = cls(ws, second_encoder_name(primary))
        try:
            opinion.encoder()
        except (LeakcoreError, ImportError, OSError) as exc:
            log.warning("the fused score goes without a second model: %s", exc)
            return None
        return opinion

    def encoder(self):
        """The second model (built once per workspace object)."""
        from leakcore.encoders import create_encoder

        return self.ws.cache("second model", self.name,
                             lambda: create_encoder(self.name, input_size=SECOND_INPUT_SIZE), entries=2)

    def embed(self, pairs: pd.DataFrame, progress: Callable[[str, int, int], None] | None = None) -> None:
        """Embed (into the cache) the images of `pairs` the cache lacks."""
        items = self.ws.items().drop_duplicates("item_id").set_index("item_id")
        ids = pd.unique(pd.concat([pairs["eval_item_id"], pairs["train_item_id"]]))
        report = (lambda d, t: progress("second model", d, t)) if progress else None
        self.vectors(items.loc[ids].reset_index(), progress=report)

    def vectors(self, items: pd.DataFrame, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, have) of stored items, embedding into the cache what it lacks."""
        from leakcore.embed import embed_items

        return embed_items(self.ws, items, self.encoder(), progress=progress)

    def similarity(self, pairs: pd.DataFrame) -> np.ndarray:
        """Per pair, the second model's similarity from the cache; NaN where a vector is missing."""
        shas = verify.item_shas(self.ws)
        a = pd.Series(shas.reindex(pairs["eval_item_id"]).to_numpy())
        b = pd.Series(shas.reindex(pairs["train_item_id"]).to_numpy())
        name, fingerprint, dim = self.cache()
        cache, keys = _read_cache(self.ws, name, fingerprint, dim)
        have = (a.isin(keys) & b.isin(keys)).to_numpy()
        out = np.full(len(pairs), np.nan)
        if have.any():
            out[have] = (cache.get(list(a[have])) * cache.get(list(b[have]))).sum(1)
        return out

    def of_images(self, eval_images: list, train_vectors: np.ndarray) -> np.ndarray:
        """The same for eval images in memory (the fitting suite's edits, one pair explained) against vectors."""
        return (self.encoder().encode_images(eval_images) * train_vectors).sum(1)


def _read_cache(ws, encoder: str, fingerprint: str, dim: int):
    """(EmbeddingCache, its keys) of one encoder build's vectors, read again only when its shards change: every
    load of the pairs with the fused score asks."""
    from leakcore.embed import EmbeddingCache

    def read():
        cache = EmbeddingCache(ws.paths.embeddings(encoder, fingerprint), dim)
        return cache, cache.keys()

    return ws.cache(f"embedding cache {encoder}/{fingerprint}", ws.stamp("embeddings", encoder, fingerprint), read)


def decided_by_matches(ev: pd.DataFrame, rule=MATCH_RULE) -> np.ndarray:
    """Pairs whose local features decide on their own: at least `rule`'s (inliers, ratio) ORB matches under one
    geometric map, and, with the rule's third part, at least that share of the overlap's textured tiles agreeing
    under the same map (or too few of them to tell); with a fourth part, from that many inliers where the tiles are
    there to tell and agree. A strong crop keeps a quarter of the photo,
    so the whole-image evidence the model weighs most (the embedding, the alignment) looks like a look-alike's,
    while its matches are as many as a copy's; two photos under one banner match as many times, on the banner."""
    inliers, ratio = rule[:2]
    if "orb_inliers" not in ev or "orb_ratio" not in ev:
        return np.zeros(len(ev), bool)
    found, share = ev["orb_inliers"].to_numpy(float), ev["orb_ratio"].to_numpy(float)
    decided = (found >= np.log1p(inliers)) & (share >= ratio)
    if len(rule) > 2 and "tiles_agree" in ev:
        agree = ev["tiles_agree"].to_numpy(float)
        decided &= np.isnan(agree) | (agree >= rule[2])
        if len(rule) > 3:  # fewer inliers, from rule[3], where the tiles are there to tell and agree
            decided |= (found >= np.log1p(rule[3])) & (share >= ratio) & ~np.isnan(agree) & (agree >= rule[2])
    return decided.astype(bool)


def decided_by_pixels(ev: pd.DataFrame, rule) -> np.ndarray:
    """Pairs aligned nearly pixel for pixel: NCC and SSIM on their overlap at least `rule` = (ncc, ssim), and with
    the rule's third part the crop search's NCC at four times the canvas at least that too, where the search ran
    (verify.TWIN_CROP_AGREES: smooth pictures align at 32 px with other parts of themselves)."""
    if "ncc" not in ev or "ssim" not in ev:
        return np.zeros(len(ev), bool)
    decided = (ev["ncc"].to_numpy(float) >= rule[0]) & (ev["ssim"].to_numpy(float) >= rule[1])
    if len(rule) > 2 and "crop_ncc" in ev:
        crop = ev["crop_ncc"].to_numpy(float)
        decided &= np.isnan(crop) | (crop >= rule[2])
    return decided


def decided_by_crop(ev: pd.DataFrame, rule=(TWIN_CROP_NCC, TWIN_CROP_DETAIL)) -> np.ndarray:
    """Pairs where one image is found in the other as a crop: `verify.crop_search`'s NCC and detail NCC at least
    `rule` = (ncc, detail). A strong crop of a region with few corners (fur, a leaf) gives local features too little
    to match, and the whole-image alignment cannot scale it; its pixels still sit in the original."""
    if "crop_ncc" not in ev or "crop_detail" not in ev:
        return np.zeros(len(ev), bool)
    return ((ev["crop_ncc"].to_numpy(float) >= rule[0]) & (ev["crop_detail"].to_numpy(float) >= rule[1])).astype(bool)


def floor_matched(ev: pd.DataFrame, scores: np.ndarray, hard: float, rule=None, pixels=None, crop=None, *,
                  soft: float | None = None, raw_hard: float | None = None) -> np.ndarray:
    """`scores` raised into [hard, 1] where the local matches decide (`decided_by_matches` by a model's
    (inliers, ratio) rule), with `pixels` = (ncc, ssim) where the pixels align (`decided_by_pixels`), and with
    `crop` = (ncc, detail) where one image is a crop of the other (`decided_by_crop`); unchanged where the model
    has none of these rules (fitted before them). A decided pair scores hard + (1 - hard) x its model score: at least
    hard and at least its own score, so no flag at any threshold up to hard changes, and decided pairs keep the
    model's order among themselves (raised to hard itself, every planted copy of a photo set tied at one value, and a
    curator could not sort them: a new user's trial).

    With `raw_hard` (and `soft`), hard means the same picture as the raw similarity says it, as the README defines
    it: a pair reaches hard only where its raw similarity is at least the encoder's raw hard threshold (an exact or
    re-encoded copy). Every other pair at or above soft, decided or not, scores soft + (hard - soft) x its score, in
    [soft, hard): still flagged, as a soft leak (a crop, a flip, a banner, a colour change), in the model's order. On
    photos every planted copy was decided and so hard, a 50% crop as much as a re-encoded copy (a new user's trial).
    No pair changes sides of soft."""
    decided = np.zeros(len(ev), bool)
    if rule is not None:
        decided |= decided_by_matches(ev, tuple(rule))
    if pixels is not None:
        decided |= decided_by_pixels(ev, tuple(pixels))
    if crop is not None:
        decided |= decided_by_crop(ev, tuple(crop))
    scores = np.asarray(scores, dtype=float)
    lifted = np.where(decided, hard + (1.0 - hard) * np.clip(scores, 0.0, 1.0), scores)
    if raw_hard is None or soft is None:
        return lifted
    same = ev["similarity"].to_numpy(dtype=float) >= raw_hard
    banded = soft + (hard - soft) * np.clip(scores, 0.0, 1.0)
    return np.where(same, lifted, np.where(decided | (scores >= soft), banded, scores))


def _estimator(cv: int = 5) -> CalibratedLogistic:
    """The calibrated model (sigmoid calibration over `cv` folds)."""
    return CalibratedLogistic(cv)


def _folds(y: np.ndarray) -> int:
    """Five folds, fewer when the rarer class is too small for five (a small workspace's decisions)."""
    return int(max(2, min(5, np.bincount(np.asarray(y, int), minlength=2).min() // 2)))


def outdated(meta: dict) -> str | None:
    """Why a stored model cannot be used by this version (its evidence or its second model's vectors are not the
    ones this version computes), or None."""
    if meta.get("version") != verify.VERSION:
        return f"its pixel evidence is of version {meta.get('version')}, this one computes version {verify.VERSION}"
    if meta.get("decisive_pixels") is not None and len(meta["decisive_pixels"]) < 3:
        return "its pixel rule does not check the pixels at four times the canvas (verify.TWIN_CROP_AGREES)"
    if "hard_needs_raw" not in meta:
        return "its hard threshold does not ask for the raw similarity's hard (the same picture)"
    size, caches = meta.get("second_input_size"), meta.get("second_caches") or []
    if meta.get("second_encoder") and (size != SECOND_INPUT_SIZE or len(caches) != 1):
        return f"its second model ran at {size} px" + (" with mirrored images" if len(caches) > 1 else "")
    return None


def load(ws, encoder: str | None = None) -> FusedModel | None:
    """The stored fused model of an encoder, or None (kept on the workspace per version of its files). A model
    fitted by an older version that this one cannot score counts as none (logged): a scan with verification fits it
    again."""
    encoder = encoder or ws.encoder
    meta_file = ws.paths.fused_file(encoder, "model.json")
    stamp = ws.stamp("fused", encoder)
    if None in stamp:  # no model
        return None

    def read() -> FusedModel | None:
        meta = json.loads(meta_file.read_text())
        why = outdated(meta["meta"])
        if why is None and meta.get("format", 1) < MODEL_FORMAT:
            why = "its fitted numbers are in a pickle (model.joblib), which this version does not load"
        if why:
            log.warning("the fused model of %s in %s was fitted by an older version (%s): fit it again", encoder,
                        ws.path, why)
            return None
        return FusedModel.from_stored(encoder, meta)

    return ws.cache(f"fused model {encoder}", stamp, read)


def was_rescued(pairs: pd.DataFrame) -> np.ndarray:
    """Rows a verification checked below the candidate threshold (`fused.rescued`: their canvases agree as one
    photograph); none in a table stored before it (the column is missing, or missing for some tables: NA)."""
    if "rescued" not in pairs.columns:
        return np.zeros(len(pairs), bool)
    return pairs["rescued"].fillna(False).to_numpy(dtype=bool)


def with_fused(ws, pairs: pd.DataFrame, fm: FusedModel) -> pd.DataFrame:
    """`pairs` plus `fused` (P(same photograph); 0 where a pair is not verified, or under the candidate threshold
    and not `was_rescued`)
    and `verified`; `similarity` stays the raw cosine. (`raw_similarity`, a copy of it, is still added for callers
    written when `similarity` held the fused score; read `similarity`.)"""
    if pairs.empty:
        return pairs.assign(raw_similarity=pairs["similarity"], fused=pairs["similarity"], verified=False)
    ev = verify.evidence_for(ws, pairs)
    # a pair under the model's candidate threshold is not its to score, even where evidence for it is stored (from
    # an earlier model with a lower threshold, or a curator's decision): the flags are those a scan from empty gives
    verified = ev["ncc"].notna().to_numpy() & ((pairs["similarity"].to_numpy(float) >= fm.candidate_)
                                               | was_rescued(pairs))
    # the second model and the model read the verified pairs only (the rest score 0): on CIFAR-10, 5,242 of the
    # 200,000 stored pairs, and the second model's similarity of them all was most of a load of the pairs (1.1 s)
    if fm.second:
        second = np.full(len(pairs), np.nan)
        if verified.any():
            second[verified] = SecondOpinion.of_model(ws, fm).similarity(pairs[verified])
        ev[SECOND_FEATURE] = second
        verified &= ~np.isnan(second)
    fused = np.zeros(len(pairs))
    if verified.any():
        fused[verified] = fm.predict(ev[verified].assign(similarity=pairs["similarity"].to_numpy()[verified]))
    out = pairs.copy()
    out["raw_similarity"] = out["similarity"]
    out["fused"] = _float32_up(fused)
    out["verified"] = verified
    return out


def _float32_up(x: np.ndarray) -> np.ndarray:
    """`x` as float32, rounded up where float32 falls below it: a pair floored at hard (float64) stays at or above
    hard when stored (rounded to nearest, 0.9900670 fell 3e-8 under it, and such pairs counted as soft)."""
    out = x.astype(np.float32)
    low = out < x
    out[low] = np.nextafter(out[low], np.float32(np.inf))
    return out


class FusedScore(Score):
    """The fused score as a strategy of `leakcore.scores` (listed there; nothing registers on import)."""

    name = "fused"
    column = "fused"

    def add(self, ws, pairs: pd.DataFrame, encoder: str) -> pd.DataFrame:
        fm = load(ws, encoder)
        if fm is None:
            from leakcore.errors import ThresholdsUncalibrated

            if ws.paths.fused_file(encoder, "model.json").exists():  # stored, but fitted by an older version
                raise ThresholdsUncalibrated(
                    f"the fused score's model of {encoder} was fitted by an older version of leakcore and must be "
                    f"fitted again",
                    cli=f"a scan fits it again: `leakcore scan {ws.path}` (or `leakcore verify {ws.path} --refit`)",
                    page="Run a scan from the Home page: it fits the model again (a few seconds), or switch back to "
                         "the raw similarity")
            raise ThresholdsUncalibrated(
                f"the workspace scores pairs by the fused score, but {encoder} has no fitted model",
                cli=f"fit it: `leakcore verify {ws.path} --refit`, or go back: `leakcore verify {ws.path} --use similarity`",
                page="Fit the fused score first, or switch back to the raw similarity")
        return with_fused(ws, pairs, fm).drop(columns="raw_similarity")
