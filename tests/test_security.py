"""Security, without services: secrets round-trip into the clients' settings and never into text we
print; the dashboard renders ids and titles literally and plays no file outside the audio root.

Over the real services: tests/test_security_services.py."""
from __future__ import annotations

import html
import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from markdown_it import MarkdownIt
from pymongo.uri_parser import parse_uri

from common import kafka as ck
from common.spark import REDACTION
from conf import Settings

ROOT = Path(__file__).resolve().parent.parent
HARD = "p@ss:w/rd%25 \"q\\'x#?&"            # @ : / % and friends, a quote and a backslash


def test_a_password_with_at_colon_slash_percent_round_trips_through_the_uri():
    s = Settings(mongo_uri="mongodb://alice@db.example:27017/?replicaSet=rs0", mongo_password=HARD,
                 mongo_tls=True, mongo_auth_source="admin")
    uri = s.mongo_uri_with_secret
    parsed = parse_uri(uri)                   # what pymongo and, through the same URI, the Spark connector read
    assert parsed["username"] == "alice" and parsed["password"] == HARD
    assert parsed["nodelist"] == [("db.example", 27017)]
    assert parsed["options"]["replicaSet"] == "rs0" and parsed["options"]["tls"] is True
    assert parsed["options"]["authSource"] == "admin"
    assert HARD not in uri                    # only URL-encoded
    user = Settings(mongo_username="b@b:/", mongo_password="x")
    assert parse_uri(user.mongo_uri_with_secret)["username"] == "b@b:/"


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30))
def test_any_password_round_trips(password):
    s = Settings(mongo_uri="mongodb://u@h:1/", mongo_password=password)
    assert parse_uri(s.mongo_uri_with_secret)["password"] == password


def test_a_password_in_the_uri_itself_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as exc:
        Settings(mongo_uri="mongodb://alice:hunter2@h:27017/")
    assert "MUSICREC_MONGO_PASSWORD" in str(exc.value) and "hunter2" not in str(exc.value)


def test_secrets_come_from_the_environment_not_the_env_file(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("MUSICREC_MONGO_PASSWORD=from-file\nMUSICREC_KAFKA_SASL_PASSWORD=from-file\nMUSICREC_MONGO_DB=x\n")
    for name in ("MUSICREC_MONGO_PASSWORD", "MUSICREC_KAFKA_SASL_PASSWORD", "MUSICREC_MONGO_DB"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=env)
    assert s.mongo_db == "x" and s.mongo_password is None and s.kafka_sasl_password is None
    monkeypatch.setenv("MUSICREC_MONGO_PASSWORD", HARD)
    assert Settings(_env_file=env).mongo_password.get_secret_value() == HARD


def test_summary_and_reprs_mask_every_secret():
    s = Settings(mongo_uri="mongodb://u@h/", mongo_password=HARD, kafka_sasl_password=HARD)
    for text in (str(s.summary()), repr(s), str(s)):
        assert HARD not in text and "p%40ss" not in text


def test_kafka_security_settings_reach_both_clients():
    s = Settings(kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol="SASL_SSL",
                 kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="svc", kafka_sasl_password=HARD,
                 kafka_ssl_ca_file="/etc/ca.pem")
    c = ck.client_config(s, **{"group.id": "g"})
    assert c == {"bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_SSL",
                 "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": HARD,
                 "ssl.ca.location": "/etc/ca.pem", "group.id": "g"}
    o = ck.spark_options(s)
    assert o["kafka.security.protocol"] == "SASL_SSL" and o["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert o["kafka.ssl.truststore.type"] == "PEM" and o["kafka.ssl.truststore.location"] == "/etc/ca.pem"
    jaas = o["kafka.sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required ")
    # the password comes back out of the JAAS quoting (the real broker reads it in test_security_services)
    quoted = re.search(r'password="((?:[^"\\]|\\.)*)";$', jaas).group(1)
    assert re.sub(r"\\(.)", r"\1", quoted) == HARD
    plain = ck.client_config(Settings())
    assert plain == {"bootstrap.servers": Settings().kafka_bootstrap, "security.protocol": "PLAINTEXT"}


def _java_regex_in_python(regex: str) -> re.Pattern:
    return re.compile(regex)      # the ones we use are valid in both dialects


def test_spark_redaction_covers_the_uri_password_and_the_jaas_config():
    s = Settings(mongo_uri="mongodb://alice@h:27017/", mongo_password=HARD, kafka_security_protocol="SASL_PLAINTEXT",
                 kafka_sasl_username="svc", kafka_sasl_password=HARD)
    text = _java_regex_in_python(REDACTION["spark.redaction.string.regex"])
    plan = (f"RelationV2[connection.uri={s.mongo_uri_with_secret}] "
            f"kafka.sasl.jaas.config={ck.spark_options(s)['kafka.sasl.jaas.config']}")
    redacted = text.sub("*********(redacted)", plan)
    assert "p%40ss" not in redacted and "p@ss" not in redacted and "alice" not in redacted, redacted
    keys = _java_regex_in_python(REDACTION["spark.sql.redaction.options.regex"])
    assert keys.search("connection.uri") and keys.search("kafka.sasl.jaas.config")
    conf_keys = _java_regex_in_python(REDACTION["spark.redaction.regex"])
    assert conf_keys.search("spark.executorEnv.MUSICREC_MONGO_PASSWORD")
    assert conf_keys.search("spark.executorEnv.MUSICREC_KAFKA_SASL_PASSWORD")


def test_spark_submit_dry_run_shows_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    env.update(MUSICREC_MONGO_PASSWORD=HARD, MUSICREC_KAFKA_SASL_PASSWORD=HARD + "k",
               MUSICREC_MONGO_URI="mongodb://alice@127.0.0.1:1/")
    out = subprocess.run(["./spark-submit.sh", "--dry-run", "jobs/fit_model.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "spark-submit" in text and "MUSICREC_MONGO_URI=mongodb://alice@127.0.0.1:1/" in text
    for secret in (HARD, "p%40ss", "p@ss", "p\\@ss"):
        assert secret not in text
    assert "MUSICREC_MONGO_PASSWORD" not in text and "MUSICREC_KAFKA_SASL_PASSWORD" not in text
    assert "spark.driver.bindAddress=127.0.0.1" in text         # a local driver listens on loopback


# --- the dashboard --------------------------------------------------------------------------------------

def _rendered_text(markdown: str) -> str:
    """What a reader sees of `markdown` (CommonMark, as Streamlit's renderer): the text of the HTML."""
    out = MarkdownIt("commonmark").render(markdown)
    return html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


MARKDOWN_IDS = ["**bold** _u_", "[click](http://evil.example)", "<img src=x onerror=alert(1)>", "# heading",
                "`code`", ":red[alarm] :smile:", "a\\*b", "&lt;b&gt;", "1. list", "> quote", "---", "x | y",
                "$x^2$", "~~gone~~", "![i](http://e/x.png)", "<script>alert(1)</script>"]


@pytest.mark.parametrize("text", MARKDOWN_IDS + ["`tick`", "a``b", "``"])
def test_ids_written_as_markdown_render_literally(text):
    from dashboard.ui import code, escape_md

    assert _rendered_text(escape_md(text)) == text
    assert "<img" not in MarkdownIt("commonmark").render(escape_md(text))
    assert _rendered_text(f"model {code(text)} ok") == f"model {text} ok"     # the code-span form too


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40))
def test_any_text_renders_literally(text):
    from dashboard.ui import code, escape_md

    if text != text.strip() or "  " in text:      # markdown folds outer and repeated blanks: nothing to see
        return
    assert _rendered_text(escape_md(text)) == text
    assert _rendered_text(f"x {code(text)} y") == f"x {text} y" if text else True


def test_the_audio_player_never_serves_a_file_outside_the_audio_root(tmp_path, monkeypatch):
    from dashboard import data

    root = tmp_path / "audio"
    (root / "000").mkdir(parents=True)
    (root / "000" / "000002.mp3").write_bytes(b"ok")
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(b"no")
    (root / "000" / "link.mp3").symlink_to(secret)
    monkeypatch.setenv("MUSICREC_AUDIO_DIR", str(root))

    class Snap:
        """A track map that stores `path` for every track."""

        def __init__(self, path):
            self.path = path

        def path_of(self, track_id):
            return self.path

    assert data.audio_file(2, Snap("000/000002.mp3")) == root / "000" / "000002.mp3"
    for bad in (str(secret), "../secret.mp3", "000/../../secret.mp3", "000/link.mp3", "/etc/passwd"):
        got = data.audio_file(99, Snap(bad))
        assert got is None, (bad, got)
    assert data.audio_file(2, Snap("../secret.mp3")) == root / "000" / "000002.mp3"   # falls back to FMA's layout
    assert data.audio_file("../../etc", None) is None
