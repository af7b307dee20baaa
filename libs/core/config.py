"""Runtime configuration, read from the environment (and an optional .env file).

Every setting has a default that works for the embedded one-process mode (`cxr-report run`):
SQLite in ./var, an in-process queue and the bundle under models/reference.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class PacsServer(BaseModel):
    """One DICOMweb server (PACS/VNA) the platform pulls studies from and may store results to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(pattern=r"^https?://", description="DICOMweb root, e.g. http://orthanc:8042/dicom-web")
    qido_prefix: str | None = None
    wado_prefix: str | None = None
    stow_prefix: str | None = None
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10, description="HTTP retries per request (connection errors, 408/429/503/504)")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry")
    verify_tls: bool | str = Field(default=True, description="false, or a CA bundle path")
    pull: bool = Field(default=True, description="look studies up here when they are not stored locally")
    store_results: bool = Field(default=False, description="store each finished report here as a DICOM SR")

    @model_validator(mode="after")
    def _credentials(self) -> "PacsServer":
        if self.auth == "basic" and not (self.username and self.password):
            raise ValueError(f"PACS {self.name}: auth basic needs username and password")
        if self.auth == "bearer" and not self.token:
            raise ValueError(f"PACS {self.name}: auth bearer needs token")
        return self


class DimseDestination(BaseModel):
    """A PACS that takes the report SRs over DIMSE C-STORE (one without DICOMweb); docs/pacs.md."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str = Field(min_length=1, max_length=16, description="the PACS's (called) AE title")
    host: str
    port: int = Field(ge=1, le=65535)
    calling_ae_title: str | None = Field(default=None, max_length=16, description="unset: CXR_DIMSE_AE_TITLE")
    timeout_s: float = Field(default=30.0, gt=0, description="association, DIMSE and network timeouts")
    retries: int = Field(default=2, ge=0, le=10, description="new associations after a failed one, per attempt")
    backoff_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles each retry")
    store_results: bool = True


class Hl7Destination(BaseModel):
    """A RIS / EHR that takes each report as an HL7 v2.5.1 ORU^R01 over MLLP (docs/pacs.md, HL7)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str
    port: int = Field(ge=1, le=65535)
    receiving_application: str = Field(default="", max_length=180, description="MSH-5")
    receiving_facility: str = Field(default="", max_length=180, description="MSH-6")
    timeout_s: float = Field(default=10.0, gt=0, description="connect and wait-for-ACK timeout")
    retries: int = Field(default=3, ge=0, le=10, description="re-sends after no ACK or an AE/CE ACK, per attempt")
    backoff_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles each retry")
    store_results: bool = True


class FhirDestination(BaseModel):
    """An external FHIR R4 server each finished report is pushed to, as one transaction Bundle
    (libs/fhir/push.py; docs/fhir.md, "Pushing to a FHIR server")."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    base_url: str = Field(pattern=r"^https?://", description="the server's FHIR R4 base, e.g. https://fhir.example.org/r4")
    timeout_s: float = Field(default=10.0, gt=0, description="per-request timeout")
    retries: int = Field(default=3, ge=0, le=20, description="re-posts after a transport error, 408, 429 or 5xx, per attempt")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each retry (Retry-After honoured)")
    store_results: bool = True


def load_pacs_file(path: Path) -> list[PacsServer]:
    """A YAML or JSON file: a list of servers, or {"pacs": [...]}. ${VAR} is taken from the environment."""
    import yaml

    text = os.path.expandvars(Path(path).read_text())
    live = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    unset = sorted(set(re.findall(r"\$\{(\w+)\}", live)))
    if unset:
        raise ValueError(f"{path}: environment variable(s) {', '.join(unset)} not set")
    data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    if isinstance(data, dict):
        data = data.get("pacs", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of PACS servers (or a 'pacs:' key holding one)")
    return [PacsServer.model_validate(item) for item in data]


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
    # A worker process that exits unexpectedly (kill -9, OOM, Celery's "Unrecoverable error" when Redis
    # goes away mid-task) is started again by its supervisor (services/supervisor.py), backing off to 30 s.
    worker_restart: bool = Field(default=True, description="Restart a worker process that exits unexpectedly")
    # /readyz is 503 while some step has no live worker (heartbeats in Redis): what the gateway accepted
    # then would wait unreported. False: the workers are listed but do not decide readiness.
    feedback_window_days: float = Field(default=30.0, gt=0, le=3650,
                                        description="Rolling window of the feedback quality metrics")
    ready_requires_workers: bool = Field(default=True, description="Readiness needs a live worker per step")
    # Model lifecycle (docs/lifecycle.md): the validation gate, shadow, canary and rollback.
    gate_sensitivity_min: float = Field(default=0.98, ge=0, le=1,
                                        description="Validation gate: least sensitivity on each gated observation")
    gate_hallucination_max: float = Field(default=0.03, ge=0, le=1,
                                          description="Validation gate: most drafts with a finding the head did not see")
    gate_labels: list[str] | None = Field(default=None, description="Observations the sensitivity gate is on; unset: "
                                                                    "the critical findings (libs/domain/labels.py)")
    shadow_min_hours: float = Field(default=48.0, ge=0, description="Least time in shadow before a canary")
    canary_share: float = Field(default=0.10, gt=0, lt=1, description="Share of studies the canary drafts")
    canary_min_feedback: int = Field(default=30, ge=1, description="Signed studies per arm before a canary decision")
    canary_alpha: float = Field(default=0.01, gt=0, lt=1,
                                description="Family-wise significance of the canary comparison (Bonferroni)")
    rollback_window_hours: float = Field(default=24.0, ge=0,
                                         description="A production version this recent is rolled back when an alert fires")
    drift_window: int = Field(default=200, ge=20, description="Recent studies each drift check compares")
    drift_alpha: float = Field(default=0.01, gt=0, lt=1, description="Drift checks alarm below this p-value")
    drift_permutations: int = Field(default=200, ge=50, le=10_000, description="Permutations calibrating the MMD test")
    drift_check_interval_s: float = Field(default=900.0, ge=10, description="The reconciler checks for drift this often")
    task_max_retries: int = Field(default=5, ge=0)
    max_deliveries: int = Field(default=3, ge=1, description="A step message delivered this often without finishing "
                                "(its worker died each time) fails its job as a dead letter")
    task_retry_backoff_max_s: int = Field(default=120, ge=1)
    max_upload_mb: int = Field(default=512, ge=1)
    # Dynamic batching in the inference service; None = what the bundle's manifest says (8, 100 ms).
    batching: bool = Field(default=True, description="Batch concurrent studies in the inference service")
    max_batch_size: int | None = Field(default=None, ge=1, le=256)
    max_queue_delay_ms: float | None = Field(default=None, ge=0, le=10_000)
    num_beams: int | None = Field(default=None, ge=1, le=8,
                                  description="Report decoding: 1 = greedy, k > 1 = beam search; unset: the bundle manifest's")
    execution_providers: str | None = Field(
        default=None, description="Comma-separated onnxruntime providers to try in order; unset: TensorRT, CUDA, CPU "
                                  "(whichever are installed)")
    provider_cache_dir: Path | None = Field(default=None, description="TensorRT engine/timing cache; unset: DATA_DIR/provider-cache")
    metrics_port: int | None = Field(default=None, ge=1, le=65535,
                                     description="Workers: serve Prometheus /metrics on this port (one per process)")
    metrics_host: str = Field(default="0.0.0.0", description="Workers: the address /metrics listens on "
                                                             "(127.0.0.1 keeps it to loopback)")
    step_delay_s: float = Field(default=0.0, ge=0, description="Fault injection: sleep before each step (tests)")
    long_poll_max_s: float = Field(default=60.0, ge=0)
    # PACS over DICOMweb (docs/pacs.md): a list (CXR_PACS as JSON, or given directly), a file
    # (CXR_PACS_CONFIG, YAML/JSON), and/or one default server from CXR_PACS_URL and friends.
    pacs: list[PacsServer] = Field(default_factory=list)
    pacs_config: Path | None = Field(default=None, description="YAML/JSON file listing PACS servers")
    pacs_url: str | None = Field(default=None, description="DICOMweb root of one default PACS")
    pacs_auth: Literal["none", "basic", "bearer"] = "none"
    pacs_username: str | None = None
    pacs_password: SecretStr | None = None
    pacs_token: SecretStr | None = None
    pacs_connect_timeout_s: float = Field(default=5.0, gt=0)
    pacs_read_timeout_s: float = Field(default=60.0, gt=0)
    pacs_retries: int = Field(default=3, ge=0, le=10)
    pacs_store_results: bool = False
    # Which report SRs go to the DICOM result destinations (docs/pacs.md, "Results back to the PACS"):
    # "text" = the narrative report (Comprehensive SR after TID 2000: what every PACS viewer shows as
    # the report), "tid1500" = the IHE AI Results measurement report (each assessed observation coded,
    # with its probability, region and algorithm: what AI-result viewers such as OHIF read). Both by
    # default: neither replaces the other for its readers.
    sr_templates: list[Literal["text", "tid1500"]] = Field(
        default_factory=lambda: ["text", "tid1500"], min_length=1,
        description="report SRs stored back: text (TID 2000 pattern) and/or tid1500 (a JSON list in the environment)")
    sr_verifying_organization: str = Field(default="Radiology", min_length=1, max_length=64,
                                           description="VerifyingOrganization of a signed report's SR")
    # Studies pushed with STOW-RS get a job on their own once no instance arrived for this long.
    auto_report_on_stable: bool = False
    stable_study_age_s: float = Field(default=60.0, ge=0)
    stable_study_poll_s: float = Field(default=5.0, gt=0)
    stable_study_lookback_s: float = Field(default=86400.0, gt=0, description="older studies are never picked up")
    # DICOM DIMSE (docs/pacs.md, "DIMSE"): the C-STORE SCP a modality or PACS sends studies to
    # (python -m services.dimse). A study it receives is reported like a STOW-RS one: by the stable-study
    # watcher (auto_report_on_stable) or a POST /api/v1/studies/{id}/report.
    dimse_ae_title: str = Field(default="CXR_REPORT", min_length=1, max_length=16, pattern=r"^[ -~]*[!-~][ -~]*$",
                                description="the AE title this platform answers to (called AE)")
    dimse_host: str = Field(default="127.0.0.1", description="address the SCP listens on (0.0.0.0: every interface)")
    dimse_port: int = Field(default=11112, ge=1, le=65535)
    dimse_allowed_calling_aets: list[str] = Field(
        default_factory=list, description="calling AE titles allowed to associate (a JSON list in the environment); "
                                          "empty: any (logged at start)")
    dimse_max_pdu: int = Field(default=65536, ge=0, le=2**32 - 1, description="maximum PDU size received (0: no limit)")
    dimse_acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_network_timeout_s: float = Field(default=60.0, gt=0)
    dimse_max_associations: int = Field(default=10, ge=1, le=100)
    # HL7 v2 results (docs/pacs.md, HL7): ORU^R01 over MLLP to each destination, with the SRs.
    hl7_destinations: list[Hl7Destination] = Field(
        default_factory=list, description="RIS / EHR systems that take ORU^R01 over MLLP (a JSON list in the environment)")
    hl7_sending_application: str = Field(default="CXR_REPORT", max_length=180, description="MSH-3")
    hl7_sending_facility: str = Field(default="", max_length=180, description="MSH-4")
    hl7_service_code: str = Field(default="18748-4^Diagnostic imaging study^LN",
                                  description="OBR-4 universal service identifier (code^text^system)")
    dimse_destinations: list[DimseDestination] = Field(
        default_factory=list, description="PACS that take the report SRs by C-STORE (a JSON list in the environment)")
    # FHIR (docs/fhir.md). The project's own extension, CodeSystem, NamingSystem and SearchParameter URLs
    # all derive from one canonical base: a hospital that publishes the resources sets its own.
    fhir_definitions_base_url: str = Field(
        default="https://cxr-report.dev/fhir", pattern=r"^(https?://|urn:)\S+$",
        description="canonical base of the project-defined FHIR extensions, code systems and identifier systems")
    # External FHIR R4 servers each finished report is pushed to, like the PACS result destinations: a
    # list (CXR_FHIR_DESTINATIONS as JSON) and/or one from CXR_FHIR_PUSH_URL (named "fhir").
    fhir_destinations: list[FhirDestination] = Field(
        default_factory=list, description="FHIR R4 servers reports are pushed to (a JSON list in the environment)")
    fhir_push_url: str | None = Field(default=None, description="FHIR R4 base URL of one destination named \"fhir\"")
    fhir_push_retries: int = Field(default=3, ge=0, le=20)
    fhir_push_timeout_s: float = Field(default=10.0, gt=0)

    # ---- security (docs/security.md). Every endpoint but /healthz and /readyz needs credentials: an
    # OAuth2 bearer JWT from the configured issuer, or an API key (`cxr-report apikey create`).
    auth_disabled: bool = Field(default=False, description="Serve every endpoint without credentials "
                                "(development only; logged as a warning at start)")
    oidc_issuer: str | None = Field(default=None, description="Expected `iss` of bearer JWTs; its OIDC discovery "
                                    "document gives the JWKS unless oidc_jwks_url / oidc_jwks_file is set")
    oidc_audience: str | None = Field(default=None, description="Expected `aud` of bearer JWTs")
    oidc_jwks_url: str | None = Field(default=None, description="The issuer's JWKS URL (instead of discovery)")
    oidc_jwks_file: Path | None = Field(default=None, description="A JWKS file (instead of discovery)")
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwks_cache_s: int = Field(default=300, ge=0, description="How long fetched signing keys are reused")
    jwks_refetch_cooldown_s: float = Field(default=30.0, ge=0, description="A token with an unknown key id refetches "
                                           "the JWKS at most this often (so forged kids cannot flood the issuer)")
    jwt_leeway_s: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp / nbf")
    public_api_docs: bool = Field(default=False, description="Serve /docs and /openapi.json without credentials")
    # HTTPS: the gateway serves TLS itself when both are set (or terminate TLS at an ingress).
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # ---- limits on what a client may send (STOW-RS)
    max_instances_per_request: int = Field(default=200, ge=1, description="DICOM parts in one STOW-RS request")
    max_instances_per_study: int = Field(default=200, ge=1, description="Instances stored for one study")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="Rows x columns x frames of one image")
    # ---- reliability: the reconciler re-enqueues jobs whose queue message was lost (Redis restart)
    reconcile_enabled: bool = Field(default=True, description="Run the reconciler (Celery backend only)")
    reconcile_interval_s: float = Field(default=15.0, gt=0)
    reconcile_stale_s: float = Field(default=120.0, gt=0, description="A job unchanged this long is re-enqueued")
    results_max_attempts: int = Field(default=10, ge=1, description="SR store-back attempts before dead-lettering")

    @model_validator(mode="after")
    def _collect_pacs(self) -> "Settings":
        servers = list(self.pacs)
        if self.pacs_config is not None:
            servers += load_pacs_file(self.pacs_config)
        if self.pacs_url:
            servers.append(PacsServer(
                name="default", url=self.pacs_url, auth=self.pacs_auth, username=self.pacs_username,
                password=self.pacs_password, token=self.pacs_token,
                connect_timeout_s=self.pacs_connect_timeout_s, read_timeout_s=self.pacs_read_timeout_s,
                retries=self.pacs_retries, store_results=self.pacs_store_results,
            ))
        fhir = list(self.fhir_destinations)
        if self.fhir_push_url:
            fhir.append(FhirDestination(name="fhir", base_url=self.fhir_push_url, retries=self.fhir_push_retries,
                                        timeout_s=self.fhir_push_timeout_s))
        names = ([p.name for p in servers] + [d.name for d in self.dimse_destinations]
                 + [h.name for h in self.hl7_destinations] + [f.name for f in fhir])
        if len(set(names)) != len(names):
            raise ValueError(f"PACS names (DICOMweb, DIMSE, HL7 and FHIR destinations together) must be unique: {names}")
        self.pacs = servers
        self.pacs_config = None
        self.pacs_url = None
        self.fhir_destinations = fhir
        self.fhir_push_url = None
        return self

    @property
    def pull_servers(self) -> list[PacsServer]:
        return [p for p in self.pacs if p.pull]

    @property
    def result_servers(self) -> list[PacsServer | DimseDestination | Hl7Destination | FhirDestination]:
        """Where each finished report goes: DICOMweb servers (SR by STOW-RS), DIMSE destinations (SR by
        C-STORE), HL7 destinations (ORU^R01 over MLLP) and FHIR servers (a transaction Bundle)."""
        return ([p for p in self.pacs if p.store_results] + [d for d in self.dimse_destinations if d.store_results]
                + [h for h in self.hl7_destinations if h.store_results]
                + [f for f in self.fhir_destinations if f.store_results])

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
