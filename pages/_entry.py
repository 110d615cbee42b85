"""Every page is entered through app.py, even when a page URL is the server's first request.

Why: with a `pages/` folder beside app.py, Streamlit starts in its old multipage mode and
switches to app.py's `st.navigation` only once app.py has run. If the first request after a
(re)start is a page URL (a restored tab on /train), Streamlit runs that page file alone,
without the navigation, the sidebar and the wide layout, and stays so for every visitor
until app.py runs. `require_app` notices that (app.py marks each run it starts) and sends the
visitor through app.py, which then switches back to the page asked for.
"""
from __future__ import annotations

import streamlit as st

VIA_APP = "_via_app"  # set by app.py at the start of each of its runs
INTENDED = "_intended_page"  # the page a visitor asked for before app.py had run


def mark_app_run() -> None:
    """app.py: this script run goes through the app's navigation."""
    st.session_state[VIA_APP] = True


def require_app(page: str) -> None:
    """A page: if it was run alone (not through app.py), go through app.py first, then back
    to `page` (its path, e.g. "pages/train.py")."""
    if st.session_state.get(VIA_APP):
        return
    st.session_state[INTENDED] = page
    st.switch_page("app.py")


def resume_intended() -> None:
    """app.py, after `st.navigation`: open the page a visitor asked for before app.py had run."""
    page = st.session_state.pop(INTENDED, None)
    if page:
        st.switch_page(page)
