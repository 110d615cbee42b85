"""emotion_core: the Streamlit-free library behind the facial-emotion benchmark.

Packages, lowest layer first (each imports only from those above it in this list):

    store        where everything lives on disk; atomic files; runs, datasets, leaderboard
    data         image folders -> cleaned, split, cached, augmented batches (+ synthetic faces)
    models       the registry (the one place that names a model), builders, weight sources
    evaluation   inference, metrics, cost, stored-run loading, ensembles, cross-dataset scores
    training     the one training loop, its config/profiles, planner, checkpoints
    explain      feature maps, the Grad-CAM family, ViT attention, faithfulness
    views        Streamlit-free view models for the app's pages (tables, probe, live)
    jobs         background training jobs started from the app

The Streamlit app (app.py, pages/) and the CLIs (scripts/) are thin layers over it; see
docs/architecture.md for the flow of one image and of one training run.
"""

__version__ = "0.2.0"
