"""The Kafka edge: every client's connection and security settings, from conf/ in one place.

`client_config` is for confluent-kafka (librdkafka names), `spark_options` for Spark's Kafka source and
sink (the Java client's names, prefixed `kafka.`). Both carry the same bootstrap servers, protocol,
SASL credentials and CA file. The SASL password is in the returned dicts only: never log them (Spark
redacts `kafka.sasl.jaas.config` through the redaction settings in common/spark.py).
"""
from __future__ import annotations

from conf import Settings

_JAAS_MODULE = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def _sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def _ssl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _password(settings: Settings) -> str:
    p = settings.kafka_sasl_password
    return "" if p is None else p.get_secret_value()


def client_config(settings: Settings, **extra) -> dict:
    """confluent-kafka Producer/Consumer/AdminClient configuration."""
    conf = {"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": settings.kafka_security_protocol}
    if _sasl(settings):
        conf.update({"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": settings.kafka_sasl_username,
                     "sasl.password": _password(settings)})
    if _ssl(settings) and settings.kafka_ssl_ca_file is not None:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    conf.update(extra)
    return conf


def jaas_quote(text: str) -> str:
    """A JAAS option value: double-quoted, backslash and quote escaped (Kafka's JaasConfig tokenizer)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_options(settings: Settings) -> dict[str, str]:
    """Options of Spark's Kafka source/sink (`.options(**spark_options(settings))`)."""
    opts = {"kafka.bootstrap.servers": settings.kafka_bootstrap,
            "kafka.security.protocol": settings.kafka_security_protocol}
    if _sasl(settings):
        opts["kafka.sasl.mechanism"] = settings.kafka_sasl_mechanism
        opts["kafka.sasl.jaas.config"] = (f"{_JAAS_MODULE[settings.kafka_sasl_mechanism]} required "
                                          f"username={jaas_quote(settings.kafka_sasl_username)} "
                                          f"password={jaas_quote(_password(settings))};")
    if _ssl(settings) and settings.kafka_ssl_ca_file is not None:
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = str(settings.kafka_ssl_ca_file)
    return opts
