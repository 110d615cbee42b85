"""Background training from the app: the Train form that starts a job, and the job panel.

The job itself runs in its own process (emotion_core.jobs); these widgets only start it, show its
state and status line (`job_status(...).message`), the log (in an expander, Train page only) and
cancel it. While it runs the panel is a fragment that redraws itself every 2 s, and when the job
ends it reruns the whole app so the new runs appear everywhere (and are ticked in the sidebar).
"""
from __future__ import annotations

import streamlit as st

from emotion_core import jobs
from emotion_core.views import dataset_tables, stamps, train_form

JOB_REFRESH_S = 2.0  # how often a running job's panel redraws itself
LOG_LINES = 200  # log lines shown in the Train page's expander
STATUS_CHARS = 160  # the status line is cut to this length
STATE_TEXT = {"running": "Training job running", "succeeded": "Last job finished",
              "failed": "Last job failed", "cancelled": "Last job cancelled"}


def train_form_widgets(datasets: list[str], current: str | None = None) -> None:
    """Choose datasets (the sidebar's `current` one first ticked), models, profile, epochs and
    recipe; start a background job."""
    sources = {n: [str(f) for f in dataset_tables.training_folders(n)] for n in datasets}
    sources = {n: folders for n, folders in sources.items() if folders}
    if not sources:
        st.info("No dataset folder to train on yet: start the quick demo from Home.")
        return
    c1, c2, c3 = st.columns([2, 1, 1])
    picked = c1.multiselect("Train on", list(sources),
                            default=[current] if current in sources else list(sources)[:1],
                            key="train_datasets",
                            help="Several sets train together: each keeps its own cleaning and "
                                 "split, and each set's test is reported on its own (the runs "
                                 "are listed under the dataset 'a+b').")
    profile = c2.selectbox("Profile", ["quick", "full"], key="train_profile",
                           help="quick: CPU, 112 px, minutes per model; full: GPU, 224 px")
    epochs = c3.number_input("Epochs (0 = default)", 0, 200, 0, key="train_epochs")
    chosen = st.multiselect("Models", train_form.model_order(), default=train_form.default_models(),
                            key="train_models", help=train_form.model_help(),
                            placeholder="Choose models (fastest first)")
    st.caption("Ticked by default: the fastest useful models (small pretrained CNNs). Models are "
               "listed fastest first; hover the ? for each one.")
    recipe = st.radio("Recipe", list(train_form.RECIPES), format_func=train_form.RECIPES.get,
                      key="train_recipe",
                      help="Real faces: the faces are found on first use (MTCNN), and the "
                           "recipe's own image size, rates and 14 epochs with early stopping "
                           "replace the profile's (a number of Epochs above replaces its 14).")
    if st.button("Start training", key="train_start", type="primary",
                 disabled=not (chosen and picked)):
        args = train_form.job_args({n: sources[n] for n in picked}, chosen, profile,
                                   int(epochs), recipe)
        try:
            info = jobs.start_job(args)
            st.success(f"Started job {info.job_id} ({', '.join(chosen)}).")
        except jobs.JobBusyError as exc:
            st.error(str(exc))


def job_panel(*, compact: bool) -> None:
    """State and progress of the latest job (and its log when not compact); refreshes itself
    while it runs."""
    info = jobs.job_status()
    if info is None:
        if not compact:
            st.info("No training job has run yet.")
        return
    if info.running:
        _live_job(info.job_id, compact)
    else:
        _job_body(info.job_id, compact, was_running=False)


@st.fragment(run_every=JOB_REFRESH_S)
def _live_job(job_id: str, compact: bool) -> None:
    fingerprint = stamps.runs_fingerprint()
    key = f"_job_runs_{'c' if compact else 'f'}"
    before = st.session_state.get(key)
    st.session_state[key] = fingerprint
    if before is not None and before != fingerprint:
        st.rerun()  # a model of the job finished: the whole app reruns and shows its run
    _job_body(job_id, compact, was_running=True)


def status_line(message: str) -> str:
    """The job's one-line status, cut to fit under the progress bar."""
    line = " ".join(str(message or "").split())
    return line if len(line) <= STATUS_CHARS else line[:STATUS_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def _job_body(job_id: str, compact: bool, was_running: bool) -> None:
    now = jobs.job_status(job_id)
    if now is None:
        return
    st.caption(f"{STATE_TEXT[now.state]} · {now.job_id}")
    st.progress(min(1.0, max(0.0, now.progress)), text=status_line(now.message) or None)
    if now.running and st.button("Cancel job", key=f"cancel_{'c' if compact else 'f'}"):
        jobs.cancel_job()
        st.rerun()
    if not compact:
        for model, text in now.warnings.items():
            st.warning(f"**{model}**: {text}")
        with st.expander("Log", expanded=False):
            lines = jobs.read_log(now.job_id).splitlines()
            st.code("\n".join(lines[-LOG_LINES:]) or "(no output yet)", language=None)
    if was_running and not now.running:
        st.rerun()  # the job just ended: rerun the whole app so its new runs appear


def training_now() -> bool:
    """Whether a training job is running now (it shares the CPU with the app)."""
    info = jobs.job_status()
    return info is not None and info.running


def share_cores(busy: bool) -> None:
    """Before a page predicts: one torch thread while a training job runs (`busy`; see
    evaluation.inference.share_cores), torch's default otherwise."""
    from emotion_core.evaluation import inference  # imports torch: only on pages that predict

    inference.share_cores(busy)


def busy_note(busy: bool | None = None) -> str:
    """A sentence for timings taken while a training job shares the CPU ("" when none runs);
    `busy`: `training_now()` when the page has asked already."""
    if not (training_now() if busy is None else busy):
        return ""
    return (" · a training job is running (at lower priority): times here include its load on "
            "the CPU")
