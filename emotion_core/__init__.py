"""emotion_core: the Streamlit-free library behind the facial-emotion benchmark.

Data preparation, the model registry, the one training loop, evaluation, explanations and the
artifact store. The Streamlit app (app.py, pages/) and the CLIs (scripts/) are thin layers over it.
"""

__version__ = "0.1.0"
