"""Impact page pieces: inputs (predictions, probes, leak set) and the charts of accuracy per subset."""
from __future__ import annotations


import pandas as pd
import plotly.graph_objects as go
import streamlit as st


from leakcore.api import PROBE_PREFIX, PROBES, ImpactRequest, LeakSource, Project
from ui import data

LEAK_SOURCE_TEXT = {LeakSource.DECISIONS: "our flags, curator decisions first", LeakSource.FLAGS: "our flags only",
                    LeakSource.LIST: "an imported list (CSV of eval key, train key)"}


def inputs(ws: Project) -> ImpactRequest | None:
    """The form: evaluation split, predictions (upload or server paths), probes, leak set; None until submitted."""
    splits = data.split_names(ws, "eval")
    trained = {s.split("/", 1)[0] for s in data.split_names(ws, "train")}
    # the default is a split whose dataset has a training split, so the default probes can run on it
    splits = sorted(splits, key=lambda s: s.split("/", 1)[0] not in trained)
    if st.session_state.get("imp_split") not in splits:
        st.session_state["imp_split"] = splits[0] if splits else None
    if "imp_probes" not in st.session_state:
        st.session_state["imp_probes"] = ["knn1"] if splits and splits[0].split("/", 1)[0] in trained else []
    with st.form("impact_form"):
        c1, c2 = st.columns(2)
        split = c1.selectbox("Evaluation split", splits, key="imp_split",
                             help="The k-NN probes need a training split of the same dataset" + (
                                 f" (these have none: {', '.join(s for s in splits if s.split('/', 1)[0] not in trained)})"
                                 if any(s.split("/", 1)[0] not in trained for s in splits) else ""))
        from ui.data import encoders

        clip_ok = any(r["name"] == "clip-vit-b32" and r["available"] for r in encoders())
        probes = c2.multiselect("Built-in probes (no outside model)", [p for p in PROBES if p != "clip" or clip_ok],
                                key="imp_probes",
                                help="k-NN over the training embeddings (k=1, and a distance-weighted k=20 vote)"
                                     + ("; zero-shot CLIP from the class names" if clip_ok else
                                        "; zero-shot CLIP is not offered: no CLIP weights on this machine"))
        uploads = st.file_uploader("Predictions (CSV / Parquet / JSONL with a key and a predicted label, or a JSON list "
                                   "in item order)", accept_multiple_files=True, key="imp_uploads")
        paths = st.text_area("…or paths on the server, one per line (globs allowed)", key="imp_paths", height=68)
        c3, c4 = st.columns([2, 1])
        source = c3.radio("Leaked set", list(LeakSource), key="imp_source", format_func=LEAK_SOURCE_TEXT.get)
        leak_file = c3.file_uploader("Leak list (for an imported list)", type=["csv"], key="imp_leak_file")
        st.session_state.setdefault("imp_random", 1000)  # kept across pages (ui/state.PERSISTENT): no default here
        n_random = c4.number_input("Random subsets", 100, 20_000, step=100, key="imp_random")
        submitted = st.form_submit_button("Measure impact", type="primary")
    if not submitted and "imp_result" not in st.session_state:
        return None
    if not submitted:
        return st.session_state["imp_args"]
    if source == LeakSource.LIST and leak_file is None:
        st.error("Upload the leak list CSV, or choose our flags.")
        return None
    # sent files travel as bytes (the facade writes them under clean names and removes them); typed paths and
    # globs are resolved by the facade, inside the folders the server allows
    args = ImpactRequest(split, tuple(line.strip() for line in (paths or "").splitlines() if line.strip()),
                         tuple(probes), LeakSource(source), None, int(n_random),
                         uploads=tuple((up.name, up.getvalue()) for up in uploads or []),
                         leak_upload=(leak_file.name, leak_file.getvalue()) if source == LeakSource.LIST else None)
    st.session_state["imp_args"] = args
    st.session_state.pop("imp_result", None)
    return args


def chart_models(table: pd.DataFrame, at_most: int = 12) -> list[str]:
    """The models the chart shows first: at most `at_most`, spread over the range of full-set accuracy (weak models
    gain most; the first 12 by name left out the best known), the built-in probes among them."""
    import numpy as np

    full = table[table["subset"] == "full"].sort_values("accuracy")
    names = full["model"].astype(str).tolist()
    if len(names) <= at_most:
        return sorted(names)
    probes = [m for m in names if m.startswith(PROBE_PREFIX)][:at_most // 3]
    rest = [m for m in names if m not in probes]
    picks = np.unique(np.linspace(0, len(rest) - 1, at_most - len(probes)).round().astype(int))
    return sorted(probes + [rest[i] for i in picks])


def accuracy_chart(table: pd.DataFrame, models: list[str]) -> None:
    """Per model, a dot per subset side by side; the random subsets as a dot with its 95% interval. Dots, not bars:
    the axis starts near the lowest accuracy so that points apart are seen apart, and bars cut off there made the
    gaps look several times their size (a new user's reading)."""
    t = table[table["model"].isin(models)]
    fig = go.Figure()
    colours = {"full": "#64748b", "hard-leaked": "#b91c1c", "soft-leaked": "#ea580c", "non-leaked": "#16a34a"}
    for subset, colour in colours.items():
        s = t[t["subset"] == subset]
        if not s.empty:
            fig.add_scatter(x=s["model"], y=100 * s["accuracy"], name=f"{subset} (n={int(s['n'].iloc[0])})",
                            mode="markers", marker={"color": colour, "size": 11})
    r = t[t["subset"] == "soft-leaked"]
    if not r.empty:
        fig.add_scatter(x=r["model"], y=100 * r["random_mean"], name="random, same size as soft-leaked",
                        mode="markers", marker={"color": "#94a3b8", "size": 11, "symbol": "diamond"},
                        # an accuracy stops at 100%: the interval's upper end is drawn there at most (it ran off the axis)
                        error_y={"type": "data", "symmetric": False,
                                 "array": 100 * (r["random_high"].clip(upper=1.0) - r["random_mean"]).clip(lower=0.0),
                                 "arrayminus": 100 * (r["random_mean"] - r["random_low"])})
    # the random intervals drawn whole too (none on a split with no leak)
    low = pd.concat([t["accuracy"]] + ([r["random_low"]] if not r.empty and "random_low" in r else [])).min()
    lo = max(0.0, 100 * low - 5) if not t.empty else 0
    fig.update_layout(scattermode="group", height=440, yaxis_title="accuracy (%)", yaxis_range=[lo, 100.5],
                      legend={"orientation": "h", "y": -0.3}, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=f"Accuracy per subset (axis from {lo:.0f}%; error bars: 95% interval of random subsets)")
    st.plotly_chart(fig, key="imp_chart", width="stretch")


P_LABEL = "p (two-sided, vs random)"
PERCENT = {"accuracy": "accuracy %", "gain": "gain (points)", "random_mean": "random mean %",
           "random_low": "random 2.5% %", "random_high": "random 97.5% %"}


def show_percent_table(frame: pd.DataFrame) -> None:
    """A table of fractions shown as percentages (accuracy %) and percentage points (gain) with two decimals,
    p-values with four, and empty cells empty (never "None" or "nan")."""
    out = frame.copy()
    formats = {}
    for col, label in PERCENT.items():
        if col in out.columns:
            out[col] = 100 * out[col].astype(float)
            formats[label] = "{:.2f}"
    out = out.rename(columns={**PERCENT, "p_value": P_LABEL, "n": "images"})
    if P_LABEL in out.columns:
        formats[P_LABEL] = "{:.4f}"
    if "images" in out.columns:
        formats["images"] = "{:,.0f}"
    for col in out.columns:
        if col not in formats and out[col].dtype.kind == "f":
            formats[col] = "{:.2f}"
    # as text, right-aligned: the browser drew a missing number as "None" whatever the Styler's na_rep said
    for col, fmt in formats.items():
        out[col] = [fmt.format(v) if pd.notna(v) else "" for v in out[col]]
    st.dataframe(out, hide_index=True, width="stretch",
                 column_config={c: st.column_config.TextColumn(c, alignment="right") for c in formats})


def gains_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model: full accuracy and the gain of each subset over it (percentage points)."""
    wide = table.pivot(index="model", columns="subset", values="gain") * 100
    full = table[table["subset"] == "full"].set_index("model")["accuracy"] * 100
    wide.insert(0, "full accuracy %", full)
    if "p_value" in table:  # a split with no leaked image has no leaked subset, so no p-value
        p = table[table["subset"] == "soft-leaked"].set_index("model")["p_value"]
        if not p.empty:
            wide["p (soft-leaked vs random, two-sided)"] = p
    return wide.reset_index()  # rounded where shown, once: rounded here to 3 decimals first, 18.7845 read 18.79


__all__ = ["LEAK_SOURCE_TEXT", "accuracy_chart", "gains_table", "inputs", "show_percent_table"]
