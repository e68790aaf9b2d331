"""One way to build a SparkSession for every job, locally or on a cluster.

Under `spark-submit` (see spark-submit.sh) master and jars are already set and `builder` only picks the
running configuration up; from plain Python (tests, notebooks) the connector jars in settings.jars_dir
are added here, so both paths see the same classpath.
"""
from __future__ import annotations

import os
import sys

from conf import Settings


# What Spark masks (as *********(redacted)) in its UI, event logs and plan strings:
# - conf keys and environment variables named like a secret (Spark's default plus JAAS configs);
# - data source options named like an address or a secret: the MongoDB connector's `connection.uri`
#   (user:password@) and the Kafka source's `kafka.sasl.jaas.config`;
# - any text of the form scheme://user:password@ or password="..." (plans, error messages).
REDACTION = {
    "spark.redaction.regex": "(?i)secret|password|token|access[.]?key|jaas|credential",
    "spark.sql.redaction.options.regex": "(?i)url|uri|jaas|password|secret|token",
    "spark.redaction.string.regex": r'(?i)(?<=://)[^/@\s]+:[^/@\s]*(?=@)|password\s*=\s*"(?:[^"\\]|\\.)*"',
}


def connector_jars(settings: Settings) -> list[str]:
    return sorted(str(p) for p in settings.jars_dir.glob("*.jar"))


def default_signals() -> None:
    """spark-submit.sh starts the JVM, and so the Python driver, with SIGINT and SIGTERM ignored (so that
    the driver alone decides how to stop): give them their default handling back in the driver."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def is_local(master: str) -> bool:
    return master.startswith("local")


def local_bind(settings: Settings) -> dict[str, str]:
    """A local-master driver (its RPC, block manager and UI) listens on `spark_bind_address` only."""
    addr = settings.spark_bind_address
    if not addr:
        return {}
    return {"spark.driver.bindAddress": addr, "spark.driver.host": addr}


def build_session(settings: Settings, app: str, extra: dict[str, str] | None = None):
    from pyspark.sql import SparkSession

    default_signals()
    builder = SparkSession.builder.appName(f"{settings.spark_app_prefix}-{app}")
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # plain Python; spark-submit's PythonRunner sets it
        builder = builder.master(settings.spark_master).config("spark.pyspark.python", sys.executable)
        if is_local(settings.spark_master) and settings.spark_bind_address:
            # the UI binds to SPARK_LOCAL_IP, or to every interface: read when the JVM starts
            os.environ.setdefault("SPARK_LOCAL_IP", settings.spark_bind_address)
            for key, value in local_bind(settings).items():
                builder = builder.config(key, value)
        # a driver started from plain Python takes its workers' interpreter from PYSPARK_PYTHON, not from
        # spark.pyspark.python (read by spark-submit only): without it they run `python3` from PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        log4j = settings.root / "stack" / "spark" / "log4j2.properties"   # what spark-submit.sh passes
        if log4j.exists():
            builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
        jars = connector_jars(settings)
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
    conf = {
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    conf.update(REDACTION)
    conf.update(extra or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
