"""Settings read from ``OBSBENCH_*`` environment variables.

- ``OBSBENCH_HOME``: root of the embedded store (Parquet + SQLite); default ``~/.obsbench``.
- ``OBSBENCH_DATABASE_URL``: SQLAlchemy URL for audit, alerts and report history;
  default SQLite at ``$OBSBENCH_HOME/obsbench.db``.
- ``OBSBENCH_PROMETHEUS_URL``: base URL of a Prometheus server; default unset.
- ``OBSBENCH_LOG_LEVEL``: DEBUG, INFO, WARNING or ERROR; default INFO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from obsbench.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """obsbench configuration; every field maps to ``OBSBENCH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OBSBENCH_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".obsbench")
    database_url: str | None = None
    prometheus_url: str | None = None
    log_level: LogLevel = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            msg = "must be a sqlite:/// or postgresql+psycopg:// URL"
            raise ValueError(msg)
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            msg = "must start with http:// or https://"
            raise ValueError(msg)
        return value.rstrip("/") if value else value

    @property
    def data_dir(self) -> Path:
        """Folder of the Parquet datasets."""
        return self.home / "data"

    @property
    def database(self) -> str:
        """The effective SQLAlchemy URL (SQLite under the home unless configured)."""
        return self.database_url or f"sqlite:///{self.home / 'obsbench.db'}"


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with keyword overrides.

    Raises
    ------
    ConfigError
        Naming each invalid ``OBSBENCH_*`` variable and why.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"OBSBENCH_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        msg = f"invalid obsbench configuration: {problems}"
        raise ConfigError(
            msg, hint="correct or unset the variables named above (see obsbench.config)."
        ) from None
