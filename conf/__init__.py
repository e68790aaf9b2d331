"""Settings of musicrec, read in one place (see settings.py)."""
from conf.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
