"""View models for the app: what the pages show, computed without Streamlit.

    tables   pandas tables from the artifact store (comparison, confusion, study numbers, EDA)
    display  headings, number formats, chance level, bar order, pictures fitted to a box
    labels   one readable name per run, distinct among the runs shown together; weights labels
    samples  a prepared dataset's pictures: EDA images, held-out samples, one image by name
    probe    one run on one picture: feature maps, CAMs, attention, with faithfulness
    framing  what a run reads of a picture: its face cut as it was trained, or the picture
    live     decode an upload, find faces, every chosen run side by side
    live_video  webcam frames: faces tracked, labels smoothed, FPS counted, drawn
    train_form  the Train page's model order and defaults
    stamps   cache keys: strings that change when the files behind a cache entry change
"""
