"""Training-side API of runlake: log runs, params, metrics, tags, artifacts and models.

Imports only pyarrow and the standard library, so it is light to import and safe in forked
processes (DataLoader workers, multiprocessing pools)::

    import runlake.ingest as rl

    rl.set_experiment("mnist")
    with rl.start_run(run_name="baseline") as run:
        rl.log_param("lr", 0.01)
        for step in range(100):
            rl.log_metric("loss", 1 / (step + 1), step=step)
"""

from runlake.ingest.client import Experiment, LakeClient
from runlake.ingest.fluent import (
    active_run,
    delete_tag,
    end_run,
    flush,
    get_lake,
    load_model,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    log_text,
    set_experiment,
    set_lake,
    set_tag,
    set_tags,
    start_run,
)
from runlake.ingest.run import Run

__all__ = [
    "Experiment",
    "LakeClient",
    "Run",
    "active_run",
    "delete_tag",
    "end_run",
    "flush",
    "get_lake",
    "load_model",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_text",
    "set_experiment",
    "set_lake",
    "set_tag",
    "set_tags",
    "start_run",
]
