"""``runlake demo``: a deterministic, realistic lake for trying the dashboard and for benchmarks.

Every row goes through the public client, ``runlake.ingest.LakeClient``, as a training job's
or an importer's would: a few dozen "rich" runs with scikit-learn models, plots, CSV and text
artifacts, sweep parents, a live and a deleted run; the rest in bulk, each run's points logged
as one Arrow table. Every run has the benchmark profile: 5 metrics x 100 steps, 10 params,
8 tags. Random values are drawn a chunk of runs at a time, so a seed always gives the same lake.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from runlake.core import layout, vocab
from runlake.ingest import LakeClient, Run

BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so the lake is the same every time
STEPS = 100
METRIC_KEYS = ("train_loss", "val_loss", "val_accuracy", "learning_rate", "epoch_time")
USERS = ("alice", "bob", "chen", "dana", "emeka")
OPTIMIZERS = ("sgd", "adam", "adamw", "lion")
MODELS = ("resnet18", "resnet50", "vit-small", "convnext-tiny")
DATASETS = ("cifar10", "cifar100", "imagenet-subset")
RICH_RUNS = 24
BULK_CHUNK = 5_000
MARKER = "_demo.json"

EXPERIMENTS = (
    # name, share of the bulk runs
    ("image-classifier-sweep", 0.6),
    ("tabular-baselines", 0.2),
    ("llm-finetune", 0.2),
)


@dataclass(frozen=True)
class DemoSummary:
    """What ``build_demo`` wrote."""

    root: str
    experiments: dict[str, str]
    runs: int
    metric_points: int
    seconds: float
    reused: bool = False

    def to_text(self) -> str:
        done = "already built" if self.reused else f"written in {self.seconds:.1f} s"
        lines = [f"Demo lake at {self.root}", f"  {self.runs:,} runs, {self.metric_points:,} metric points ({done})"]
        lines += [f"  experiment {name!r} (id {eid})" for name, eid in self.experiments.items()]
        return "\n".join(lines)


def _run_id(seed: int, index: int) -> str:
    return hashlib.sha256(f"runlake-demo:{seed}:{index}".encode()).hexdigest()[:32]


def _git_sha(seed: int, index: int) -> str:
    return hashlib.sha1(f"commit:{seed}:{index // 40}".encode()).hexdigest()


def build_demo(root: str | os.PathLike[str], runs: int = 200, seed: int = 7) -> DemoSummary:
    """Write a demo lake.

    Args:
        root: where (must not already hold a lake).
        runs: how many runs in all (at least 1).
        seed: the random seed; the same seed gives the same lake.

    Raises:
        ValueError: ``runs`` < 1, or the directory already holds a lake.
    """
    import time

    if not isinstance(runs, int) or runs < 1:
        raise ValueError("--runs must be a positive integer")
    marker = os.path.join(os.fspath(root), MARKER)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            previous = json.load(f)
        if previous.get("runs") == runs and previous.get("seed") == seed:
            return DemoSummary(**{**previous["summary"], "reused": True})
        raise ValueError(
            f"{os.fspath(root)} holds a demo lake of {previous.get('runs')} runs; choose another directory"
        )
    if os.path.isdir(os.path.join(os.fspath(root), layout.RUNS)):
        raise ValueError(f"{os.fspath(root)} already holds a lake; choose an empty directory")
    started = time.perf_counter()
    client = LakeClient(root)
    experiments = {name: client.create_experiment(name) for name, _share in EXPERIMENTS}
    rng = np.random.default_rng(seed)
    rich = min(RICH_RUNS, runs)
    points, parents = _rich_runs(client, experiments, rich, rng, seed)
    remaining = runs - rich
    index = rich
    for position, (name, share) in enumerate(EXPERIMENTS):
        count = (
            remaining - sum(int(remaining * s) for _n, s in EXPERIMENTS[:-1])
            if position == len(EXPERIMENTS) - 1
            else int(remaining * share)
        )
        for start in range(0, count, BULK_CHUNK):
            size = min(BULK_CHUNK, count - start)
            points += _bulk(client, experiments[name], name, index, size, rng, seed)
            index += size
    client.flush()
    # `runs` training runs, plus the parent runs that group the sweep's children.
    summary = DemoSummary(client.root, experiments, runs + parents, points, time.perf_counter() - started)
    # Written last: a demo interrupted half-way is not mistaken for a finished one.
    with open(marker, "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "seed": seed, "summary": dataclasses.asdict(summary)}, f)
    return summary


# -- shared generators ---------------------------------------------------------------------
def _params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "lr": rng.choice(np.array(["0.1", "0.03", "0.01", "0.003", "0.001", "3e-4", "1e-4"]), n),
        "batch_size": rng.choice(np.array(["32", "64", "128", "256"]), n),
        "optimizer": rng.choice(np.array(OPTIMIZERS), n),
        "model": rng.choice(np.array(MODELS), n),
        "dropout": np.round(rng.uniform(0.0, 0.5, n), 2).astype(str),
        "weight_decay": rng.choice(np.array(["0", "1e-5", "1e-4", "5e-4"]), n),
        "epochs": rng.choice(np.array(["10", "20", "50", "100"]), n),
        "augment": rng.choice(np.array(["true", "false"]), n),
        "scheduler": rng.choice(np.array(["cosine", "step", "constant"]), n),
        "seed": rng.integers(0, 10_000, n).astype(str),
    }


def _tags(rng: np.random.Generator, n: int, experiment: str) -> dict[str, np.ndarray]:
    return {
        "team": rng.choice(np.array(["vision", "platform", "research"]), n),
        "dataset": rng.choice(np.array(DATASETS), n),
        "model family": rng.choice(np.array(["cnn", "transformer"]), n),  # a key with a space
        "data version": rng.choice(np.array(["v1", "v2", "v2.1"]), n),
        "priority": rng.choice(np.array(["low", "normal", "high"]), n),
        "stage": rng.choice(np.array(["exploration", "tuning", "candidate"]), n),
        vocab.GIT_BRANCH_TAG: rng.choice(np.array(["main", "feature/mixup", "exp/long-warmup"]), n),
        "project": np.full(n, experiment),
    }


def _curves(rng: np.random.Generator, n: int, lr: np.ndarray) -> np.ndarray:
    """Metric values, shape (n, 5, STEPS): losses falling with noise, accuracy rising.

    Values are float32 widened to float64, as PyTorch's ``loss.item()`` produces them.
    """
    t = np.arange(STEPS, dtype=np.float64)[None, :]
    rate = (0.02 + 0.08 * rng.random(n))[:, None] * np.clip(np.log10(lr.astype(float) * 1e4 + 1), 0.3, 4)[:, None]
    floor = (0.05 + 0.4 * rng.random(n))[:, None]
    start = (2.0 + rng.random(n))[:, None]
    train = floor + (start - floor) * np.exp(-rate * t) + rng.normal(0, 0.02, (n, STEPS))
    val = train + 0.05 + 0.1 * rng.random(n)[:, None] * (t / STEPS) + rng.normal(0, 0.03, (n, STEPS))
    acc = np.clip(1.0 - val / (start + 0.5), 0, 1) + rng.normal(0, 0.005, (n, STEPS))
    lr_curve = lr.astype(float)[:, None] * 0.5 * (1 + np.cos(np.pi * t / STEPS))
    epoch_time = 30 + 10 * rng.random(n)[:, None] + rng.normal(0, 1.5, (n, STEPS))
    values = np.stack([train, val, acc, lr_curve, epoch_time], axis=1)
    return values.astype(np.float32).astype(np.float64)


def _statuses(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array(["FINISHED", "FAILED", "KILLED"]), n, p=[0.9, 0.07, 0.03])


# -- bulk runs -----------------------------------------------------------------------------
# One run's points in step-major order (every key at step 0, then at step 1, ...), so the
# points of a run stopped early are a prefix of these columns: no per-point Python.
_KEY_COLUMN = pa.array(np.tile(np.array(METRIC_KEYS), STEPS))
_STEP_COLUMN = pa.array(np.repeat(np.arange(STEPS, dtype=np.int64), len(METRIC_KEYS)))
_TICKS = np.repeat(np.arange(1, STEPS + 1, dtype=np.int64), len(METRIC_KEYS))  # step + 1
_POINT_COLUMNS = ("key", "value", "timestamp", "step")


def _points(values: np.ndarray, last_step: int, start: int, interval: int) -> pa.Table:
    """One run's metric points as ``log_batch`` takes them, steps 0..``last_step``.

    Args:
        values: shape (STEPS, 5): the run's curves, step-major, C-contiguous.
        last_step: the last step logged.
        start: the run's start (epoch ms); step s is logged at ``start + (s + 1) * interval``.
        interval: ms between steps.
    """
    count = (last_step + 1) * len(METRIC_KEYS)
    return pa.Table.from_arrays(
        [
            _KEY_COLUMN.slice(0, count),
            pa.array(values.reshape(-1)[:count]),
            pa.array(start + interval * _TICKS[:count]),
            _STEP_COLUMN.slice(0, count),
        ],
        names=_POINT_COLUMNS,
    )


def _bulk(
    client: LakeClient, experiment_id: str, experiment: str, first: int, n: int, rng: np.random.Generator, seed: int
) -> int:
    """Log ``n`` runs through the client; returns their number of metric points.

    Everything random is drawn for the whole chunk first, in a fixed order, so a seed gives
    the same lake however the client batches its writes.
    """
    # Sorted, as earlier versions of the demo paired them with names: a seed names the same runs.
    ids = sorted(_run_id(seed, first + i) for i in range(n))
    start = BASE_TIME_MS + (first + np.arange(n)) * 60_000 + rng.integers(0, 30_000, n)
    statuses = _statuses(rng, n)
    interval = rng.integers(2_000, 20_000, n)
    # Failed and killed runs stop early; their curves are cut at that step.
    last_step = np.where(statuses == "FINISHED", STEPS - 1, rng.integers(5, STEPS - 1, n))
    end = start + interval * (last_step + 1)
    params = _params(rng, n)
    tags = _tags(rng, n, experiment)
    users = rng.choice(np.array(USERS), n).tolist()
    source_types = rng.choice(np.array(["LOCAL", "JOB"]), n, p=[0.3, 0.7]).tolist()
    # (n, STEPS, 5), contiguous: each run's step-major values are one row of memory.
    values = np.ascontiguousarray(_curves(rng, n, params["lr"]).transpose(0, 2, 1))
    param_keys, param_rows = list(params), list(zip(*(params[k].tolist() for k in params)))
    tag_keys, tag_rows = list(tags), list(zip(*(tags[k].tolist() for k in tags)))
    prefix = experiment.split("-")[0]
    source_name = f"/home/team/{experiment}/train.py"
    starts, ends, intervals, lasts = start.tolist(), end.tolist(), interval.tolist(), last_step.tolist()
    ends_with = statuses.tolist()
    for i, run_id in enumerate(ids):
        client.create_run(
            experiment_id,
            run_name=f"{prefix}-{first + i:06d}",
            start_time=starts[i],
            user_id=users[i],
            tags=dict(zip(tag_keys, tag_rows[i])),
            run_id=run_id,
            source={
                "source_type": source_types[i],
                "source_name": source_name,
                "source_version": _git_sha(seed, first + i),
                "entry_point": "train.py",
            },
        )
        client.log_batch(
            run_id,
            metrics=_points(values[i], lasts[i], starts[i], intervals[i]),
            params=dict(zip(param_keys, param_rows[i])),
        )
        client.set_terminated(run_id, ends_with[i], end_time=ends[i])
    client.flush()  # one chunk at a time in memory
    return int((last_step + 1).sum()) * len(METRIC_KEYS)


# -- rich runs: artifacts, models, sweep parents, a live and a deleted run -----------------
def _rich_runs(
    client: LakeClient, experiments: dict[str, str], count: int, rng: np.random.Generator, seed: int
) -> tuple[int, int]:
    points = parents = 0
    sweep_parent: str | None = None
    for i in range(count):
        kind = ("sweep", "tabular", "llm")[i % 3]
        experiment = {"sweep": "image-classifier-sweep", "tabular": "tabular-baselines", "llm": "llm-finetune"}[kind]
        experiment_id = experiments[experiment]
        params = {k: str(v[0]) for k, v in _params(rng, 1).items()}
        tags = {k: str(v[0]) for k, v in _tags(rng, 1, experiment).items()}
        parent = None
        if kind == "sweep":
            if sweep_parent is None or i % 9 == 0:
                parents += 1
                sweep_parent = client.create_run(
                    experiment_id,
                    run_name=f"sweep-{i // 9 + 1}",
                    start_time=BASE_TIME_MS - 86_400_000 + i * 1000,
                    user_id="alice",
                    tags={**tags, "sweep": "true"},
                    run_id=_run_id(seed, 10_000_000 + i),
                    source=_source(experiment, seed, i),
                )
                client.log_batch(sweep_parent, params={"search": "random", "trials": "8", "metric": "val_accuracy"})
                client.set_terminated(
                    sweep_parent, "FINISHED", end_time=BASE_TIME_MS - 86_400_000 + i * 1000 + 3_600_000
                )
            parent = sweep_parent
        status = "FINISHED"
        if kind == "llm" and i % 4 == 2:
            status = "FAILED"
        elif kind == "llm" and i % 4 == 3:
            status = "KILLED"
        start = BASE_TIME_MS - 86_400_000 + i * 120_000
        run_id = client.create_run(
            experiment_id,
            run_name=f"{kind}-{i:03d}",
            start_time=start,
            user_id=USERS[i % len(USERS)],
            tags=tags,
            parent_run_id=parent,
            run_id=_run_id(seed, 20_000_000 + i),
            source=_source(experiment, seed, i),
        )
        if i % 5 == 0:
            client.set_description(
                run_id,
                f"**Run {i}**: baseline with `{params['optimizer']}`.\n\n- lr {params['lr']}\n- batch {params['batch_size']}",
            )
        values = _curves(rng, 1, np.array([params["lr"]]))[0]
        last_step = STEPS - 1 if status == "FINISHED" else int(rng.integers(10, 60))
        metrics = _points(np.ascontiguousarray(values.T), last_step, start, 5_000)
        client.log_batch(run_id, metrics=metrics, params=params)
        points += metrics.num_rows
        run = Run(client, run_id, experiment_id, f"{kind}-{i:03d}")
        if kind == "tabular":
            _tabular_artifacts(run, rng, i)
        if kind == "llm":
            run.log_text(
                f"step {last_step}: status {status}\n" + "\n".join(f"loss={v:.4f}" for v in values[0, :last_step:10]),
                "logs/train.log",
            )
        if i == count - 1 and count >= 6:
            continue  # the newest rich run stays RUNNING, as a live run would
        client.set_terminated(run_id, status, end_time=start + (last_step + 1) * 5_000)
    if count >= 4:
        # One deleted run, so "State: Deleted" has something to show.
        client.delete_run(_run_id(seed, 20_000_000 + 1))
    return points, parents


def _source(experiment: str, seed: int, i: int) -> dict[str, str]:
    return {
        "source_type": "LOCAL" if i % 2 else "JOB",
        "source_name": f"/home/team/{experiment}/train.py",
        "source_version": _git_sha(seed, i),
        "entry_point": "train.py",
    }


def _tabular_artifacts(run: Run, rng: np.random.Generator, i: int) -> None:
    features = [f"f{j}" for j in range(6)]
    importances = rng.dirichlet(np.ones(len(features)))
    run.log_text(
        "feature,importance\n" + "\n".join(f"{f},{v:.4f}" for f, v in zip(features, importances)),
        "feature_importance.csv",
    )
    run.log_dict(
        {"classes": ["cat", "dog"], "matrix": [[int(rng.integers(40, 60)), 5], [7, int(rng.integers(40, 60))]]},
        "confusion_matrix.json",
    )
    run.log_text(_svg_bars(features, importances), "plots/importance.svg")
    figure = {
        "data": [{"type": "bar", "x": features, "y": [round(float(v), 4) for v in importances]}],
        "layout": {"title": {"text": f"Feature importance (run {i})"}},
    }
    run.log_text(json.dumps(figure), "plots/importance.plotly.json")
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # the demo extra brings scikit-learn; without it, log a plain model
        run.log_model({"weights": importances.tolist(), "bias": 0.1}, name="model")
        return
    x = rng.normal(size=(80, len(features)))
    y = (x @ importances > np.median(x @ importances)).astype(int)
    run.log_model(LogisticRegression(max_iter=200).fit(x, y), name="model")


def _svg_bars(labels: list[str], values: np.ndarray) -> str:
    bars = "".join(
        f'<rect x="{10 + 40 * j}" y="{110 - 100 * v / max(values):.1f}" width="30" height="{100 * v / max(values):.1f}" fill="#4c78a8"/>'
        f'<text x="{15 + 40 * j}" y="125" font-size="10">{label}</text>'
        for j, (label, v) in enumerate(zip(labels, values))
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="260" height="130">{bars}</svg>'
