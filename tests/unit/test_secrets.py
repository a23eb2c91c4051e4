"""Freeze never writes a credential: names and values that look like one are left out."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.environments.freeze.diff import looks_secret, user_env

SECRETS = [
    ("HF_TOKEN", "hf_abcdefghijklmnop"), ("AWS_SECRET_ACCESS_KEY", "x"), ("AWS_ACCESS_KEY_ID", "AKIAABCDEFGHIJKLMNOP"),
    ("GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuv"), ("OPENAI_API_KEY", "sk-abc"), ("WANDB_API_KEY", "x"),
    ("KAGGLE_KEY", "x"), ("PASSWD", "x"), ("DB_PASS", "x"), ("MYSQL_PASSWORD", "x"), ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
    ("SENTRY_DSN", "https://key@o1.ingest.sentry.io/1"), ("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https"),
    ("DATABASE_URL", "postgres://u:hunter2@h/db"), ("BROKER", "amqp://guest:guest@rabbit:5672/"),
    ("STORAGE", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123=="), ("HEADER", "Bearer abcdefghijklmnop"),
    ("SLACK", "xoxb-123456789012-abcdefghij"), ("MY_PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----"),
    ("COMET_API_KEY", "x"), ("NEPTUNE_API_TOKEN", "x"), ("HUGGING_FACE_HUB_TOKEN", "x"), ("SSH_AUTH_SOCK", "/tmp/a"),
]
NOT_SECRETS = [
    ("MLC_MODE", "strict"), ("BATCH_SIZE", "64"), ("KEYBOARD_LAYOUT", "us"), ("DATA_URL", "https://example.org/data.csv"),
    ("MONKEY", "banana"), ("TORCH_CUDA_ARCH_LIST", "8.0"), ("HF_DATASETS_OFFLINE", "1"), ("PROXY", "http://proxy:3128"),
]


@pytest.mark.parametrize("name, value", SECRETS)
def test_credentials_are_recognised(name, value):
    assert looks_secret(name, value)


@pytest.mark.parametrize("name, value", NOT_SECRETS)
def test_ordinary_settings_are_kept(name, value):
    assert not looks_secret(name, value)


def test_user_env_leaves_secrets_out_and_says_so():
    kept, warnings = user_env(dict(SECRETS + NOT_SECRETS), image_env={}, injected=set())
    assert set(kept) == {name for name, _ in NOT_SECRETS}
    assert all(value not in "\n".join(warnings) for _, value in SECRETS if len(value) > 3)
    assert len(warnings) == len(SECRETS)
