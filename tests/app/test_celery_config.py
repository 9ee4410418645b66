"""The Celery app as the worker commands expect it: routes, queues, late acks, no eager mode."""
from facecurate import celery_app


def _queue(name):
    route = celery_app.amqp.router.route({}, name, args=(), kwargs={})
    return route["queue"].name


def test_routes_and_reliability_settings():
    from facecurate.datasets import tasks

    assert celery_app.main == "facecurate"
    assert tasks.ingest_job.name in celery_app.tasks
    assert _queue(tasks.ingest_job.name) == "default"
    assert _queue("facecurate.ml.embed_dataset") == "gpu"
    assert _queue("facecurate.clustering.tasks_gpu.cluster") == "gpu"
    assert _queue("something.else") == "default"
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert not conf.task_always_eager
