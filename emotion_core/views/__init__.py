"""View models for the app: what the pages show, computed without Streamlit.

    tables   pandas tables from the artifact store (comparison, confusion, study numbers, EDA)
    probe    one run on one picture: feature maps, CAMs, attention, with faithfulness
    live     decode an upload, find faces, every chosen run side by side
"""
