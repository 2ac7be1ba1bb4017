"""Team: who may do what in this workspace (roles), and the audit log of every change that alters later exports."""
import streamlit as st

from ui import access_ui
from ui.widgets import flash, page, user_errors

ws = page("Team", ":material/group:")
with user_errors():
    st.title("Team")
    flash()
    access_ui.roles_editor(ws)
    st.divider()
    access_ui.audit_view(ws)
