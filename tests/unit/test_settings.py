"""Settings: defaults, overrides, and one-line errors that name the variable."""

from __future__ import annotations

import pytest

from clickstream.settings import SettingsError, load, redacted


def test_defaults_bind_to_loopback_and_use_local_services():
    s = load({}, dotenv=None)
    assert s.worker_host == s.dashboard_host == "127.0.0.1"
    assert s.uses_local_kafka and s.bootstrap == "127.0.0.1:9092"


def test_existing_kafka_and_redis_are_one_variable_each():
    s = load(
        {
            "CLICKSTREAM_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
            "CLICKSTREAM_REDIS_URL": "redis://cache:6379/1",
        },
        dotenv=None,
    )
    assert not s.uses_local_kafka and s.bootstrap == "k1:9092,k2:9092"
    assert not s.uses_local_redis and s.redis == "redis://cache:6379/1"


def test_dotenv_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CLICKSTREAM_PARTITIONS=8\nCLICKSTREAM_APP_ID='shadow'\n")
    s = load({"CLICKSTREAM_PARTITIONS": "6"}, dotenv=env_file)
    assert (s.partitions, s.app_id) == (6, "shadow")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLICKSTREAM_PARTITIONS": "four"}, "CLICKSTREAM_PARTITIONS"),
        ({"CLICKSTREAM_DASHBOARD_PORT": "70000"}, "CLICKSTREAM_DASHBOARD_PORT"),
        ({"CLICKSTREAM_KAFKA_BOOTSTRAP": "nohost"}, "CLICKSTREAM_KAFKA_BOOTSTRAP"),
        ({"CLICKSTREAM_REDIS_URL": "http://x"}, "CLICKSTREAM_REDIS_URL"),
        ({"CLICKSTREAM_STORE": "aerospike://"}, "CLICKSTREAM_STORE"),
        ({"CLICKSTREAM_APP_ID": "a b"}, "CLICKSTREAM_APP_ID"),
        ({"CLICKSTREAM_METRICS": "pageviews,bounces"}, "CLICKSTREAM_METRICS"),
        ({"CLICKSTREAM_METRICS": ","}, "CLICKSTREAM_METRICS"),
        ({"CLICKSTREAM_METRICS": "pageviews,attributed"}, "CLICKSTREAM_METRICS"),
        ({"CLICKSTREAM_COMMIT_SECONDS": "-1"}, "CLICKSTREAM_COMMIT_SECONDS"),
        ({"CLICKSTREAM_FETCH_MIN_BYTES": "0"}, "CLICKSTREAM_FETCH_MIN_BYTES"),
        ({"CLICKSTREAM_FETCH_MAX_WAIT_MS": "-5"}, "CLICKSTREAM_FETCH_MAX_WAIT_MS"),
        ({"CLICKSTREAM_FRAUD_COMMIT_SECONDS": "-0.1"}, "CLICKSTREAM_FRAUD_COMMIT_SECONDS"),
        ({"CLICKSTREAM_IDLE_SECONDS": "soon"}, "CLICKSTREAM_IDLE_SECONDS"),
        ({"CLICKSTREAM_SESSION_GAP_SECONDS": "0"}, "CLICKSTREAM_SESSION_GAP_SECONDS"),
        ({"CLICKSTREAM_WORKER_ID": "worker 1"}, "CLICKSTREAM_WORKER_ID"),
    ],
)
def test_bad_values_raise_one_line_naming_the_variable(env, named):
    with pytest.raises(SettingsError) as caught:
        load(env, dotenv=None)
    message = str(caught.value)
    assert named in message and "\n" not in message


def test_describe_masks_the_dashboard_password():
    rows = {
        name: value
        for name, value, _ in load(
            {"CLICKSTREAM_DASHBOARD_PASSWORD": "hunter2"}, dotenv=None
        ).describe()
    }
    assert rows["CLICKSTREAM_DASHBOARD_PASSWORD"] == "***"


def test_click_metrics_are_all_by_default_or_a_chosen_few():
    assert load({}, dotenv=None).click_metrics == {
        "pageviews", "clicktypes", "referrers", "uniques", "sessions", "attributed"
    }  # fmt: skip
    chosen = load({"CLICKSTREAM_METRICS": " pageviews, sessions "}, dotenv=None)
    assert chosen.click_metrics == {"pageviews", "sessions"}


def test_idle_seconds_take_fractions():
    assert load({"CLICKSTREAM_IDLE_SECONDS": "0.25"}, dotenv=None).idle_seconds == 0.25
    assert load({}, dotenv=None).fraud_commit_seconds == 0.1


def test_a_url_shows_its_password_as_stars_and_the_local_url_carries_it():
    assert redacted("redis://u:secret@h:6379/0") == "redis://u:***@h:6379/0"
    assert redacted("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"
    assert redacted("plain text") == "plain text"
    local = load({"CLICKSTREAM_LOCAL_REDIS_PASSWORD": "a@b/c"}, dotenv=None)
    assert local.redis == "redis://:a%40b%2Fc@127.0.0.1:6379/0"
    shown = {name: value for name, value, _ in local.describe()}
    assert shown["CLICKSTREAM_LOCAL_REDIS_PASSWORD"] == "***"
