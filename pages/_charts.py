"""Run tables, score bars and the warnings for collapsed runs shared by Home and Compare
(headings, formats, chance line), and Predict's probability bars.

Numbers, headings and order come from emotion_core.views.display; these helpers only choose
Streamlit widths and draw. A table's columns are sized to fit the main column at 1400 px with
the sidebar open, so none is cut off.
"""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from emotion_core import store
from emotion_core.views import display, tables
from emotion_core.views import labels as run_names

# px: room for the longest registry name, weights label, run id; numbers size to their content.
# Home and Compare's tables add up to less than the main column at 1400 px with the sidebar open.
WIDTHS = {"label": 440, "model": 135, "weights_source": 190, "created": 95, "run_id": 315,
          "profile": 60, "dataset": 90}


def run_table(table: pd.DataFrame, columns: list[str], widths: dict[str, int] | None = None
              ) -> None:
    """The chosen columns of a comparison table: headed in words, formatted, no "None";
    `widths` overrides the default column widths (px)."""
    widths = {**WIDTHS, **(widths or {})}
    shown = display.view(table, columns)
    helps = display.help_for(columns)
    sources = ""  # what each weights source is, for the column that names them
    if {"weights_source", "label"} & set(columns):
        sources = run_names.weights_help(list(zip(table["weights_source"], table["model"],
                                                  strict=True)))
    if "weights_source" in columns:
        helps[display.heading("weights_source")] = "where the starting weights came from:\n\n" + \
            sources
    if "label" in columns:
        helps[display.heading("label")] = (
            "each run's name: model · starting weights · when it was made · where it came from "
            "(bundled, GPU or CPU reference; nothing for a run trained here). The weights:"
            "\n\n" + sources)
    config = {display.heading(c): st.column_config.Column(
        width=widths.get(c), help=helps.get(display.heading(c))) for c in columns}
    st.dataframe(display.styled(shown), hide_index=True, width="stretch",
                 placeholder=display.MISSING, column_config=config)


def collapsed_warnings(runs: list[store.RunRecord], names: dict[str, str]) -> None:
    """One warning under a table of runs listing those whose model answers one class for every
    image (`tables.constant_answers`), named as the table names them."""
    found = tables.constant_answers(runs, names)
    if found:
        st.warning(tables.constant_answers_text(found))


def score_bars(table: pd.DataFrame, metric: str, chance: float | None, *, key: str) -> None:
    """Horizontal bars of one metric, best run on top, coloured by weights source; the chance
    level as a dashed line for scores (accuracy, macro-F1)."""
    data = display.bars(table, metric)
    if data.empty:
        st.info(f"No run has a {display.heading(metric)} yet.")
        return
    name = display.heading(metric)
    fig = px.bar(data, x=metric, y="bar_label", color="weights_source", orientation="h",
                 labels={metric: name, "bar_label": "", "weights_source": "weights"},
                 hover_data={"label": True, "bar_label": False},
                 height=display.bar_height(len(data)),
                 category_orders={"bar_label": list(data["bar_label"])})
    if metric in display.SCORES:
        fig.update_xaxes(range=[0, 1])
        if chance is not None:
            fig.add_vline(x=chance, line_dash="dash", line_color="grey",
                          annotation_text=f"chance {chance:.3f}", annotation_position="top")
    # the weights legend in rows above the bars: beside them, its long entries took their width
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    st.plotly_chart(fig, width="stretch", key=key)
    if metric in display.SCORES and chance is not None:
        st.caption(display.chance_note(chance))


def probability_bars(rows: list[dict]):
    """Predict's bars: one row per answer (`name`), a bar per class, probabilities 0-1; rows as
    `views.live.probability_table` gives them."""
    data = pd.DataFrame(rows)
    fig = px.bar(data, x="probability", y="name", color="class", orientation="h",
                 range_x=[0, 1], height=display.bar_height(data["name"].nunique(), per_bar=30,
                                                           base=110),
                 hover_data={"run": True, "name": False},
                 labels={"name": "", "probability": "probability", "class": ""},
                 category_orders={"name": list(dict.fromkeys(data["name"]))})
    # the classes in one row above the bars: a legend beside one bar got the bar's height and
    # scrolled, hiding the third class
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0})
    return fig
