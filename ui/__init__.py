"""Streamlit-only helpers: state keys, cached loaders, shared widgets. leakcore never imports this."""
