"""The settings the dashboard runs with, read fresh from the environment.

`conf.get_settings()` is cached for the life of the process; the dashboard instead rebuilds `Settings`
whenever a MUSICREC_ variable changed (cached per environment), so a test that points the app at its
own database through the environment, or a restart with other variables, is seen at once."""
from __future__ import annotations

import os
from functools import lru_cache

from conf import Settings

PREFIX = "MUSICREC_"


@lru_cache(maxsize=8)
def _settings_for(env: tuple[tuple[str, str], ...]) -> Settings:
    return Settings()


def current() -> Settings:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX)))
    return _settings_for(env)
