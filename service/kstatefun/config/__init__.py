"""Configuration: worker settings (flags > environment > defaults) and module.yaml.

The module.yaml names live in ``kstatefun.config.module``; the three a user's tests need
(docs/testing.md) are re-exported here."""

from kstatefun.config.module import ModuleError, load_module, parse_module
from kstatefun.config.settings import CLI_FLAGS, ENV_PREFIX, Settings, env_var, load_settings

__all__ = [
    "CLI_FLAGS",
    "ENV_PREFIX",
    "ModuleError",
    "Settings",
    "env_var",
    "load_module",
    "load_settings",
    "parse_module",
]
