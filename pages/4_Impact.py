"""Impact: how leakage inflates measured accuracy, per model and subset, with random-subset intervals."""
import streamlit as st

from ui import data, impact_ui
from ui.widgets import page, user_errors

ws = page("Impact", ":material/query_stats:", heavy=True)
with user_errors():
    st.title("Downstream impact")
    st.caption("Accuracy on the full evaluation split, its leaked and non-leaked images, and random subsets of the same "
               "size as the leaked set: how much of a score is memory?")
    args = impact_ui.inputs(ws)
    if args is None:
        st.stop()
    result = None
    with user_errors(stop=False):  # an error is shown above the last results, never instead of them
        result = data.impact(ws, args)
        st.session_state["imp_last"] = result
    result = result or st.session_state.get("imp_last")
    if result is None:
        st.stop()
    table = result.table
    st.session_state["imp_result"] = True
    st.markdown(f"**{result.split}**: {result.items} readable images · leaked set from *{result.source}*: "
                f"{result.hard} hard, {result.soft} soft")
    for note in result.notes:
        st.caption(note)
    if not (result.hard or result.soft):
        st.info(f"No image of {result.split} is leaked at the thresholds in force, so no measured accuracy here is "
                "inflated by leakage: the tables show the full split's accuracy only.")
    models = sorted(table["model"].unique())
    shown = st.multiselect("Models in the chart", models, default=impact_ui.chart_models(table), key="imp_models")
    impact_ui.accuracy_chart(table, shown or models)
    # the whole width: in half of it the p-value was off the table's right edge (a new user scrolled for it)
    st.subheader(f"Mean over {result.mean_words}")
    impact_ui.show_percent_table(result.summary())
    st.caption("The random interval and p are those of the mean over models: each random subset's accuracy averaged "
               "over the models. p is two-sided: twice the share of random subsets at least as far out on the "
               "leaked set's side.")
    st.subheader("Label agreement of leaked images")
    agree = table[table["subset"].str.startswith("soft-leaked,") & table.get("in_mean", True)]  # the mean's models
    if agree.empty:
        st.caption("No soft-leaked images, or no labels to compare (an imported list whose training images are "
                   "in no training split of this workspace).")
    else:
        impact_ui.show_percent_table(agree.groupby("subset")[["n", "accuracy", "gain"]].mean().reset_index())
    st.subheader("Gain over the full set per model (percentage points)")
    gains = impact_ui.gains_table(table)
    st.dataframe(gains.style.format({c: "{:.4f}" if c.startswith("p ") else "{:.2f}" for c in gains.columns if c != "model"},
                                    na_rep=""), hide_index=True, width="stretch")
    model = st.selectbox("Drill down into one model", models, key="imp_drill")
    impact_ui.show_percent_table(table[table["model"] == model].drop(
        columns=["model"] + [c for c in table.columns if c.startswith("mean_")]))  # the mean's: shown above
    c1, c2 = st.columns(2)
    c1.download_button("Download the full table (CSV)", table.to_csv(index=False), "impact.csv", "text/csv", key="imp_csv")
    # the report Home downloads has no impact (a dashboard-only user could not put one in it): this one holds this result
    c2.download_button("Download the leakage report with this impact (one HTML page)",
                       data=lambda: ws.report_document(impact=result).html(), on_click="ignore",
                       file_name=f"leakage-report-{ws.path.name}.html", mime="text/html", key="imp_report",
                       icon=":material/download:")
