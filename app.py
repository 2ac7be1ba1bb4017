"""Leak review dashboard: `streamlit run app.py -- --workspace DIR`. Routes to the pages in pages/."""
import streamlit as st

st.set_page_config(page_title="Leak review", page_icon="🔍", layout="wide")
PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/review.py", title="Review", icon=":material/rate_review:", url_path="review"),
]
st.navigation(PAGES).run()
