"""Reserved names every part of runlake agrees on: tags, artifact paths and defaults (stdlib only).

A string that two modules would otherwise both type lives here, once.
"""

from __future__ import annotations

# -- defaults --------------------------------------------------------------------------------
DEFAULT_LAKE = "./runlake-data"
LAKE_ENV = "RUNLAKE_LAKE"
EXPERIMENT_NAME_ENV = "RUNLAKE_EXPERIMENT_NAME"
FLUSH_INTERVAL_ENV = "RUNLAKE_FLUSH_INTERVAL"
# MLflow's variables that pick the run and experiment, read as MLflow's fluent API reads them.
MLFLOW_RUN_ID_ENV = "MLFLOW_RUN_ID"
MLFLOW_EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"
MLFLOW_EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"

# -- reserved tags (MLflow's names, so MLflow's tools read them) ------------------------------
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
MODEL_HISTORY_TAG = "mlflow.log-model.history"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_BRANCH_TAG = "mlflow.source.git.branch"
GIT_REPO_URL_TAG = "mlflow.source.git.repoURL"
GIT_REPO_URL_LEGACY_TAG = "mlflow.gitRepoURL"
GIT_DIRTY_TAG = "mlflow.source.git.dirty"
PROJECT_ENTRY_POINT_TAG = "mlflow.project.entryPoint"
# runlake's own additions.
ENTRY_POINT_TAG = "runlake.source.entryPoint"
SOURCE_SHA256_TAG = "runlake.source.sha256"

# A run's source attributes and the MLflow tags that carry them in exports and MLflow stores.
SOURCE_TAGS: dict[str, str] = {
    "source_type": SOURCE_TYPE_TAG,
    "source_name": SOURCE_NAME_TAG,
    "source_version": GIT_COMMIT_TAG,
    "entry_point": PROJECT_ENTRY_POINT_TAG,
}

# -- artifacts every run records (under the run's artifact directory) -------------------------
RUN_CONTEXT_DIR = "runlake"
ENVIRONMENT_FILE = f"{RUN_CONTEXT_DIR}/environment.json"
REQUIREMENTS_FILE = f"{RUN_CONTEXT_DIR}/requirements.txt"
GIT_DIFF_FILE = f"{RUN_CONTEXT_DIR}/git.diff"
SOURCE_DIR = f"{RUN_CONTEXT_DIR}/source/"
DEFAULT_MODEL_NAME = "model"
MLMODEL_FILE = "MLmodel"
