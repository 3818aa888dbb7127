"""Real Prefect flows run by tests/prefect_api against our Prefect API."""

import os
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.variables import Variable

ATTEMPTS = Path(os.environ.get("ATTEMPTS_FILE", "/nonexistent"))


@task
def double(n: int) -> int:
    return n * 2


@task(retries=2, retry_delay_seconds=0)
def flaky(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails")
    return "ok"


@flow
def child(n: int) -> int:
    get_run_logger().info("child got %d", n)
    return double(n)


@flow(log_prints=True)
def pipeline(count: int = 3, marker: str = "/tmp/unused") -> int:
    logger = get_run_logger()
    logger.info("starting with %d", count)
    logger.warning("a warning from the flow")
    doubled = double.map(list(range(count))).result()
    flaky(marker)
    from_child = child(5)
    greeting = Variable.get("greeting", default="no variable")
    secret = Secret.load("api-key").get()
    print(f"greeting={greeting} secret-length={len(secret)}")
    create_markdown_artifact("# Report\nall good", key="report", description="the report")
    return sum(doubled) + from_child


@flow
def broken() -> None:
    raise ValueError("the flow broke")


@flow(retries=1, retry_delay_seconds=0)
def second_time_lucky() -> str:
    attempts = int(ATTEMPTS.read_text()) if ATTEMPTS.exists() else 0
    ATTEMPTS.write_text(str(attempts + 1))
    if attempts == 0:
        raise RuntimeError("the first attempt fails")
    return "done"


@flow(timeout_seconds=1)
def too_slow() -> None:
    time.sleep(30)


@flow
def emitter(order: int = 42) -> None:
    """Emits an event of its own (a deployment's trigger reacts to it)."""
    from prefect.events import emit_event

    emit_event(
        event="acme.order.placed",
        resource={"prefect.resource.id": f"acme.order.{order}"},
        payload={"total": order * 2},
    )
