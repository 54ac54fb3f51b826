"""gemcurate's Airflow DAGs, three per project (one store each), generated from its site file.

* ``gemcurate_refresh__<site>`` (the site file's ``schedule``, default ``@weekly``):
  scrape → snapshot → curate → validate (the Great Expectations gate) → export → publish,
  which emits ``Asset("gemcurate://dataset/<site>")`` with the version tag, DVC revision
  and image/class counts in its ``extra``.
* ``gemcurate_train__<site>`` (scheduled on that asset): train → evaluate on the ``gpu``
  queue, then ``Asset("gemcurate://model/<site>")`` with the test figures.
* ``gemcurate_apply_reviews__<site>`` (every 30 minutes): when annotators decided images
  since the latest published version, curate again from dedupe and publish.

The refresh DAG is created paused (starting Airflow must not crawl a store nobody asked
for): trigger it, or unpause it to follow its schedule. The train and apply-reviews DAGs
start active, so a published version is trained on without anyone's click.

Every task of a project runs in the pool ``site_<site>`` (1 slot; ``gemcurate airflow
setup`` creates it), so two runs never crawl one store or write one data folder at once.
The tasks only wire: what they run and how an exit code is read lives in
``pipeline/interfaces/airflow/orchestration.py``. Projects: ``GEMCURATE_PROJECTS`` (os.pathsep-separated),
default the project this folder sits in. Point a run at another address of the same store
with the DAG param ``base_url`` or the Variable ``gemcurate_base_url__<site>``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from airflow.sdk import Asset, Metadata, Param, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from pipeline.interfaces.airflow import notify
from pipeline.interfaces.airflow import orchestration as orch

log = logging.getLogger(__name__)
SHARDS = orch.shards()  # read from the environment when the scheduler parses this file
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _timeout(task_id: str) -> dt.timedelta:
    return dt.timedelta(seconds=orch.TIMEOUTS_S[task_id])


def _act(outcome: orch.Outcome, what: str) -> None:
    """Turn an outcome into what Airflow does with it."""
    if outcome is orch.Outcome.SUCCESS:
        return
    if outcome is orch.Outcome.SKIP:
        raise AirflowSkipException(what)
    if outcome is orch.Outcome.FAIL:
        raise AirflowFailException(what)  # no retry
    raise AirflowException(what)           # retried with backoff


def _run(project: orch.Project, cmd: list[str], what: str, read=orch.command_outcome) -> None:
    code = orch.run(cmd, project.root)
    _act(read(code), f"{what} exited {code}")


def _defaults(project: orch.Project) -> dict:
    notifier = notify.AlertNotifier(project_root=str(project.root))
    return {"owner": "gemcurate", "retries": orch.RETRIES,
            "retry_delay": dt.timedelta(seconds=orch.retry_delay_s()),
            "retry_exponential_backoff": True,
            "max_retry_delay": dt.timedelta(seconds=orch.MAX_RETRY_DELAY_S),
            "pool": project.pool, "queue": orch.QUEUE_DEFAULT,
            "on_failure_callback": [notifier]}


def _per_image_chain(shard, dedupe, filter_, labels, curate):
    """dedupe → filter → labels → curate, each of dedupe, filter and crop (in curate) after
    its ``SHARDS`` shard tasks; the first task of the chain.

    With one worker there are no shard tasks: each stage computes its own per-image work
    (a lone shard task would only add a task's start-up and a process to the same work).
    """
    if SHARDS == 1:
        dedupe >> filter_ >> labels >> curate
        return dedupe

    def sharded(stage: str):
        return shard.override(task_id=f"{stage}_shard").partial(stage=stage).expand(
            index=list(range(SHARDS)))

    dedupe_shards, filter_shards, crop_shards = sharded("dedupe"), sharded("filter"), sharded("crop")
    dedupe_shards >> dedupe >> filter_shards >> filter_ >> labels >> crop_shards >> curate
    return dedupe_shards


def _curation_tasks(project: orch.Project, dataset: Asset):
    """dedupe, filter, crop (each sharded) → curate → validate → export → publish.

    Shared by the refresh and apply-reviews DAGs. The per-image work of dedupe (the
    fingerprints), filter and crop is mapped over ``SHARDS`` workers
    (``gemcurate filter --shard i/n``, outside the site
    pool: shards never write the same file), then ``dvc repro`` of the stage reuses every
    row they computed, so the outputs are those of one process. With ``GEMCURATE_SHARDS=1``
    there are no shard tasks: each stage does its per-image work itself.
    """

    def repro(stage: str, what: str):
        @task(task_id=stage if stage != "augment" else "curate", execution_timeout=_timeout("curate"),
              doc_md=what)
        def step() -> None:
            _run(project, orch.repro_command(stage), f"dvc repro {stage}")

        return step()

    @task(pool="default_pool", execution_timeout=_timeout("curate"))
    def shard(stage: str, index: int) -> None:
        """One share of a stage's per-image work into its cache."""
        _run(project, orch.shard_command(stage, index, SHARDS), f"gemcurate {stage} --shard")

    dedupe = repro("dedupe", "merge the shards' fingerprints; pairs, clusters (`dvc repro dedupe`)")
    filter_ = repro("filter", "merge the shards' scores, flags, decisions (`dvc repro filter`)")
    labels = repro("labels", "label issues: out-of-fold probe, confident learning (`dvc repro labels`)")
    curate = repro("augment", "crop → split → augment (`dvc repro augment`)")
    first = _per_image_chain(shard, dedupe, filter_, labels, curate)

    @task(task_id="validate", retries=0, execution_timeout=_timeout("validate"))
    def validate() -> None:
        """The Great Expectations gate: a failed suite fails the run and nothing is published."""
        code = orch.run(orch.repro_command("validate"), project.root)
        failures = orch.validation_failures(project.root)
        if code != 0 or failures:
            log.error("validation failed; nothing is published:\n%s", failures)
            raise AirflowFailException(f"validation failed:\n{failures[-3000:]}")

    @task(task_id="export", execution_timeout=_timeout("export"))
    def export() -> None:
        """Tar shards + manifest + dataset card (`dvc repro export`)."""
        _run(project, orch.repro_command("export"), "dvc repro export")

    @task(task_id="publish", outlets=[dataset], execution_timeout=_timeout("publish"))
    def publish():
        """Tag the validated dataset and push it; emit the dataset asset event."""
        if orch.unchanged_since_latest(project.root):
            raise AirflowSkipException("the dataset is the latest published version: nothing new")
        _run(project, orch.publish_command(), "gemcurate publish")
        extra = orch.dataset_event(project.root)
        log.info("published %s", extra)
        yield Metadata(dataset, extra)

    return first, curate, validate(), export(), publish()


def refresh_dag(project: orch.Project, dataset: Asset):
    @dag(dag_id=project.dag_id, schedule=project.schedule, start_date=START, catchup=False,
         max_active_runs=1, tags=[*orch.TAGS, "refresh", project.site], doc_md=__doc__,
         default_args=_defaults(project),
         on_failure_callback=[notify.AlertNotifier(str(project.root))],
         params={"base_url": Param(None, type=["null", "string"],
                                   description="another address of the same store (scheme://host:port)")})
    def refresh():
        @task(task_id="scrape", execution_timeout=_timeout("scrape"))
        def scrape() -> None:
            """Crawl the store politely; a rerun resumes (exit codes: pipeline.core.errors.ExitCode)."""
            params = get_current_context()["params"]
            url = params.get("base_url") or Variable.get(project.base_url_variable, default=None)
            code = orch.run(orch.scrape_command(project, url), project.root)
            _act(orch.scrape_outcome(code), f"gemcurate scrape exited {code}")
            dead = orch.dead_links(project.root)
            if dead:  # complete with dead links: published all the same, and said
                notify.warn(get_current_context(), dead, str(project.root))

        @task(task_id="snapshot")
        def snapshot() -> None:
            """Track the scraped raw data with DVC (`gemcurate snapshot`)."""
            _run(project, orch.snapshot_command(), "gemcurate snapshot")

        dedupe, curate, validate, export, publish = _curation_tasks(project, dataset)
        scrape() >> snapshot() >> dedupe
        curate >> validate >> export >> publish

    return refresh()


def train_dag(project: orch.Project, dataset: Asset, model: Asset):
    @dag(dag_id=f"gemcurate_train__{project.site}", schedule=[dataset], start_date=START,
         catchup=False, is_paused_upon_creation=False, max_active_runs=1,
         tags=[*orch.TAGS, "train", project.site], doc_md=__doc__,
         default_args={**_defaults(project), "queue": orch.QUEUE_GPU, "retries": 1})
    def train_on_new_version():
        @task(task_id="version", inlets=[dataset])
        def version() -> dict:
            """The dataset version of the triggering event (asset-triggered runs have no logical date);
            a run triggered by hand trains on the latest published version."""
            ctx = get_current_context()
            events = list(ctx["triggering_asset_events"].get(dataset) or [])
            if not events:
                try:
                    events = [ctx["inlet_events"][dataset][-1]]
                except (IndexError, KeyError):
                    events = []
            if not events:
                raise AirflowFailException(f"no {dataset.uri} event yet: run {project.dag_id} first")
            extra = orch.check_event(events[-1].extra)
            if not orch.head_has_version(project.root, extra):
                log.warning("the checkout moved past %s since the event; training what it holds now",
                            extra["version"])
            return extra

        @task(task_id="train", execution_timeout=_timeout("train"))
        def train(extra: dict) -> None:
            """Train on the exported dataset (`dvc repro train`)."""
            _run(project, orch.repro_command("train"), f"dvc repro train ({extra['version']})")

        @task(task_id="evaluate", outlets=[model], execution_timeout=_timeout("evaluate"))
        def evaluate(extra: dict):
            """Test-split figures and the model card (`dvc repro evaluate`); emit the model asset."""
            _run(project, orch.repro_command("evaluate"), "dvc repro evaluate")
            figures = orch.model_event(project.root, version=extra["version"])
            log.info("model: %s", figures)
            yield Metadata(model, figures)

        v = version()
        train(v) >> evaluate(v)

    return train_on_new_version()


def reviews_dag(project: orch.Project, dataset: Asset):
    @dag(dag_id=f"gemcurate_apply_reviews__{project.site}", schedule="*/30 * * * *", start_date=START,
         catchup=False, is_paused_upon_creation=False, max_active_runs=1,
         tags=[*orch.TAGS, "reviews", project.site], doc_md=__doc__,
         default_args=_defaults(project))
    def apply_reviews():
        @task(task_id="new_decisions", retries=1)
        def new_decisions() -> int:
            """Skip the run unless annotators decided images since the latest published version."""
            n = orch.pending_decisions(project.root)
            if n == 0:
                raise AirflowSkipException("no decisions since the latest published version")
            log.info("%d decision(s) since the latest published version", n)
            return n

        dedupe, curate, validate, export, publish = _curation_tasks(project, dataset)
        new_decisions() >> dedupe
        curate >> validate >> export >> publish

    return apply_reviews()


# absolute(), not resolve(): in this repository the file is a link to pipeline/project/templates/
for _project in orch.discover(default=Path(__file__).absolute().parents[1]):
    _dataset = Asset(_project.dataset_uri, group="gemcurate")
    _model = Asset(_project.model_uri, group="gemcurate")
    refresh_dag(_project, _dataset)
    if orch.trains(_project.root):  # a dataset-only project (no TensorFlow) trains nothing
        train_dag(_project, _dataset, _model)
    reviews_dag(_project, _dataset)
