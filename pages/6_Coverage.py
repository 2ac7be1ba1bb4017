"""Coverage: how one image set covers another in feature space (precision, recall, density, coverage), which
images do not belong, and the sets' spectral fingerprints."""
import streamlit as st

from leakcore.errors import as_code
from ui import coverage_ui, data
from ui.widgets import image_strip, page, user_errors

ws = page("Coverage", ":material/join_inner:", heavy=True)
with user_errors():
    st.title("Coverage and contamination")
    st.caption("A is the reference set, B is measured against it (k-NN manifolds in the embedding space, k = 5 as "
               "in the papers). Precision: how much of B looks like A. Recall: how much of A that B reaches. "
               "A training set that covers less of the test set (fewer modes) shows as lower recall and coverage.")
    left, right = st.columns(2)
    with left:
        a = coverage_ui.set_picker(ws, "A", 0)
    with right:
        b = coverage_ui.set_picker(ws, "B", 1)
    c1, c2, c3 = st.columns([1, 1, 2])
    st.session_state.setdefault("cov_k", 5)  # kept across pages (ui/state.PERSISTENT): no second default here
    st.session_state.setdefault("cov_boot", 1000)
    k = c1.number_input("k (neighbours per ball)", 1, 50, key="cov_k")
    n_boot = c2.number_input("Bootstrap resamples", 0, 5000, step=100, key="cov_boot")
    with_spectra = c3.toggle("Also compare the power spectra (decodes every image)", key="cov_spectra_on")
    if st.button("Measure", key="cov_run", type="primary"):
        st.session_state["cov_request"] = (a, b, int(k), int(n_boot), bool(with_spectra))
    request = st.session_state.get("cov_request")
    if request is None:
        st.info("Choose two sets and press Measure.")
        st.stop()
    a, b, k, n_boot, with_spectra = request
    result = data.coverage(ws, a, b, k, n_boot)
    # the sets as text: a typed filter "![x](http://host/x.png)" drew an image fetched from that host here
    st.subheader(f"B = {as_code(result.b, 200)} against A = {as_code(result.a, 200)}")
    st.caption(f"B: {result.settings['b_images']} images, A: {result.settings['a_images']} · encoder "
               f"{result.settings['encoder']} · intervals: 95% percentile bootstrap over images, radii held fixed")
    coverage_ui.metrics(result)
    coverage_ui.map_chart(result)
    n_strip = 16
    st.subheader("B images least like A")
    st.caption("Lowest realism score (max over A of its ball's radius over the distance; below 1 is outside A's "
               "manifold): in a test set, images nothing in training resembles; in a training set, images that do "
               "not belong.")
    far = result.b_scores.sort_values("realism").head(n_strip)
    # to 3 places, and never rounded up to 1 from below it (outside A): "1.00" read as inside
    image_strip(ws, list(far["item_id"]), [f"realism {min(r, 0.999) if r < 1 else r:.3f}" for r in far["realism"]])
    lonely = result.a_scores[~result.a_scores["covered"]].sort_values("nearest_similarity").head(n_strip)
    st.subheader(f"A images that no B image covers ({int((~result.a_scores['covered']).sum())} of "
                 f"{len(result.a_scores)})")
    image_strip(ws, list(lonely["item_id"]), [f"nearest B {s:.3f}" for s in lonely["nearest_similarity"]])
    with st.expander("Per-image scores (CSV)"):
        st.download_button("B against A", result.b_scores.to_csv(index=False), "coverage-b.csv", "text/csv",
                           key="cov_csv_b")
        st.download_button("A against B", result.a_scores.to_csv(index=False), "coverage-a.csv", "text/csv",
                           key="cov_csv_a")
    if with_spectra:
        st.subheader("Spectral fingerprint")
        st.caption(coverage_ui.SPECTRA_NOTE)
        spectral = data.spectra(ws, a, b)
        coverage_ui.spectra_chart(spectral)
        top = spectral.b_scores.sort_values("spectral_score", ascending=False).head(n_strip)
        st.markdown(f"B's high-frequency half deviates from A's by **{spectral.summary['high_band_deviation']:+.2f} σ** "
                    "on average (negative: less fine detail than A, as upsampled images have). Strongest outliers of B:")
        image_strip(ws, list(top["item_id"]), [f"score {s:.2f} · high {h:+.2f}" for s, h in
                                                     zip(top["spectral_score"], top["high_band"])])
