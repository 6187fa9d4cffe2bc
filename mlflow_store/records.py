"""A run as the store reads it from the lake: its rows, before they become MLflow entities.

The plugin turns a record into MLflow's ``Run``; ``runlake server``'s search view turns the same
record straight into the JSON MLflow's handler would send (``read_views``), so both answer
from one reading of the lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunInputs, RunOutputs, RunTag

# The columns of ``RunRecord.info``, in order.
RUN_INFO_COLUMNS = (
    "run_id",
    "experiment_id",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "run_name",
)


@dataclass(frozen=True)
class RunRecord:
    """One run's stored rows.

    ``info`` holds the ``RUN_INFO_COLUMNS``; params and tags are ``(key, value)`` rows, metrics
    ``(key, value, timestamp, step)`` rows of the latest point per key; ``io`` the run's dataset
    and model inputs and outputs, None when it has none.
    """

    info: tuple[Any, ...]
    artifact_uri: str
    params: list[tuple[str, str]]
    tags: list[tuple[str, str]]
    metrics: list[tuple[str, float, int, int]]
    io: tuple[RunInputs, RunOutputs] | None

    def to_run(self) -> Run:
        """The MLflow ``Run`` entity."""
        run_id, experiment_id, user_id, status, start, end, stage, name = self.info
        info = RunInfo(
            run_id=run_id,
            experiment_id=experiment_id,
            user_id=user_id or "",
            status=status,
            start_time=start,
            end_time=end,
            lifecycle_stage=stage,
            artifact_uri=self.artifact_uri,
            run_name=name,
        )
        data = RunData(
            metrics=[Metric(k, v, t, s) for k, v, t, s in self.metrics],
            params=[Param(k, v) for k, v in self.params],
            tags=[RunTag(k, v) for k, v in self.tags],
        )
        inputs, outputs = self.io or (RunInputs(dataset_inputs=[], model_inputs=[]), RunOutputs(model_outputs=[]))
        return Run(info, data, inputs, outputs)
