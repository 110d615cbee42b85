"""View models for the app: what the pages show, computed without Streamlit.

    tables   pandas tables from the artifact store (comparison, confusion, study numbers, EDA)
    labels   one readable name per run, distinct among the runs shown together
    samples  a prepared dataset's pictures: EDA images, held-out samples, one image by name
    probe    one run on one picture: feature maps, CAMs, attention, with faithfulness
    live     decode an upload, find faces, every chosen run side by side
    stamps   cache keys: strings that change when the files behind a cache entry change
"""
