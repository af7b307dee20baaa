"""Runtime configuration, read from the environment (and an optional .env file).

Every setting has a default that works for the embedded one-process mode (`cxr-report run`):
SQLite in ./var, an in-process queue and the bundle under models/reference.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=REPO_ROOT / "var", description="Stored DICOM, preprocessed images, SQLite file")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CXR_DATABASE_URL"),
        description="SQLAlchemy URL; default sqlite:///<data_dir>/cxr.db",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "CXR_REDIS_URL")
    )
    queue_backend: str = Field(default="celery", description="celery (Redis) or inprocess")
    bundle_path: Path = Field(default=REPO_ROOT / "models" / "reference", description="Model bundle folder")
    image_size: int = Field(default=512, ge=64, le=2048, description="Model input side after resize + pad")
    # A Celery message not acknowledged within this many seconds (its worker died) is delivered again.
    visibility_timeout_s: int = Field(default=300, ge=5)
    task_max_retries: int = Field(default=5, ge=0)
    task_retry_backoff_max_s: int = Field(default=120, ge=1)
    max_upload_mb: int = Field(default=512, ge=1)
    step_delay_s: float = Field(default=0.0, ge=0, description="Fault injection: sleep before each step (tests)")
    long_poll_max_s: float = Field(default=60.0, ge=0)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Plain postgresql:// would pick psycopg2, which we do not ship; psycopg 3 is the driver.
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{self.data_dir / 'cxr.db'}"

    @property
    def dicom_dir(self) -> Path:
        return self.data_dir / "dicom"

    @property
    def preprocessed_dir(self) -> Path:
        return self.data_dir / "preprocessed"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests and the CLI change the environment and need the settings read again."""
    get_settings.cache_clear()
