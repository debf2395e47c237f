"""One frozen settings object, read from ``OPSINTEL_*`` environment variables.

Every option is typed, defaulted and documented here; ``opsintel config`` prints the effective
values with secrets masked. Secrets are ``SecretStr`` so they never show in ``repr``, logs or
errors; each secret can also come from a file (``OPSINTEL_<NAME>_FILE``), the way Kubernetes
mounts a Secret.

>>> s = Settings(kafka_bootstrap="127.0.0.1:9092", clickhouse_password="hunter2")
>>> "hunter2" in repr(s)
False
>>> s.topic("tickets")
'opsintel.tickets'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TopicName = Literal["tickets", "monitoring", "changes", "deadletter", "problems", "anomalies", "feedback"]

_SECRET_FIELDS = (
    "kafka_sasl_password",
    "clickhouse_password",
    "webhook_token",
    "itsm_servicenow_password",
    "itsm_servicenow_token",
    "itsm_servicedesk_plus_authtoken",
    "itsm_servicedesk_plus_oauth_token",
    "itsm_webhook_secret",
)


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise print the input, i.e. every secret
    # (a model validator's input is the whole dict) or a DSN / URL with a password in it
    model_config = SettingsConfigDict(env_prefix="OPSINTEL_", frozen=True, extra="ignore", hide_input_in_errors=True)

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="OPSINTEL_KAFKA_BOOTSTRAP: comma-separated host:port list."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="OPSINTEL_KAFKA_SECURITY_PROTOCOL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="OPSINTEL_KAFKA_SASL_MECHANISM (with SASL_* protocols)."
    )
    kafka_sasl_username: str = Field("", description="OPSINTEL_KAFKA_SASL_USERNAME.")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="OPSINTEL_KAFKA_SASL_PASSWORD (or OPSINTEL_KAFKA_SASL_PASSWORD_FILE)."
    )
    kafka_ssl_cafile: str = Field("", description="OPSINTEL_KAFKA_SSL_CAFILE: CA bundle for SSL/SASL_SSL.")
    topic_prefix: str = Field("opsintel.", description="OPSINTEL_TOPIC_PREFIX: prefix of every topic name.")
    partitions: int = Field(4, ge=1, description="OPSINTEL_PARTITIONS: partitions of the input topics.")
    replication_factor: int = Field(1, ge=1, description="OPSINTEL_REPLICATION_FACTOR of created topics.")
    consumer_group: str = Field("opsintel-worker", description="OPSINTEL_CONSUMER_GROUP (the Faust app id).")

    # --- ClickHouse ----------------------------------------------------------------------------
    clickhouse_dsn: str = Field(
        "",
        repr=False,  # a DSN may carry a password: shown redacted by `redacted()` only
        description=(
            "OPSINTEL_CLICKHOUSE_DSN: chdb:///<dir> (embedded, the default under data_dir) or "
            "http(s)://user@host:port for a ClickHouse server."
        ),
    )
    clickhouse_database: str = Field("opsintel", description="OPSINTEL_CLICKHOUSE_DATABASE.")
    clickhouse_password: SecretStr = Field(
        SecretStr(""), description="OPSINTEL_CLICKHOUSE_PASSWORD (or OPSINTEL_CLICKHOUSE_PASSWORD_FILE)."
    )
    clickhouse_cluster: str = Field(
        "", description="OPSINTEL_CLICKHOUSE_CLUSTER: when set, DDL runs ON CLUSTER with Replicated tables."
    )

    # --- worker --------------------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="OPSINTEL_DATA_DIR: local state (chDB, Faust tables).")
    batch_size: int = Field(
        20000, ge=1,
        description="OPSINTEL_BATCH_SIZE: most events per batch; a flush is due once this many are pending.",
    )
    batch_seconds: float = Field(
        0.2, gt=0,
        description=(
            "OPSINTEL_BATCH_SECONDS: once caught up, gather this long before detecting (bounds the "
            "event-to-problem latency)."
        ),
    )
    flush_seconds: float = Field(
        1.0, ge=0,
        description=(
            "OPSINTEL_FLUSH_SECONDS: write stored rows, checkpoint the detectors and commit offsets "
            "at least this often (0: after every batch)."
        ),
    )
    shutdown_seconds: float = Field(
        30.0, gt=0,
        description=(
            "OPSINTEL_SHUTDOWN_SECONDS: on stop, wait this long at most for the pending batches to be "
            "stored and committed; past it (ClickHouse down) stop without them, a restart replays them."
        ),
    )
    encode_process: bool = Field(
        True,
        description=(
            "OPSINTEL_ENCODE_PROCESS: encode ClickHouse insert batches of events and impact rows in a "
            "child process, beside detection (false: in the worker's store thread)."
        ),
    )
    web_host: str = Field("127.0.0.1", description="OPSINTEL_WEB_HOST: bind address of the worker's HTTP port.")
    web_port: int = Field(6066, ge=1, le=65535, description="OPSINTEL_WEB_PORT: metrics, health, webhook.")
    webhook_token: SecretStr = Field(
        SecretStr(""),
        description="OPSINTEL_WEBHOOK_TOKEN: bearer token the Alertmanager webhook must send (unset = webhook off).",
    )
    webhook_max_bytes: int = Field(1_048_576, ge=1024, description="OPSINTEL_WEBHOOK_MAX_BYTES: body limit.")
    service_catalog: Path | None = Field(
        None,
        description=(
            "OPSINTEL_SERVICE_CATALOG: YAML service catalogue (services, business hours, costs, SLA "
            "targets, mapping rules); unset = every ticket maps to the default service."
        ),
    )
    service_field: str = Field(
        "category",
        description=(
            "OPSINTEL_SERVICE_FIELD: ServiceNow column used as the service when no catalogue rule "
            "matches (the log has no service column)."
        ),
    )
    log_level: str = Field("info", description="OPSINTEL_LOG_LEVEL.")

    # --- ITSM pushes of problem records (each target is off while its URL is empty) ------------
    itsm_servicenow_url: str = Field(
        "", description="OPSINTEL_ITSM_SERVICENOW_URL: instance URL, e.g. https://acme.service-now.com (empty = off)."
    )
    itsm_servicenow_username: str = Field(
        "", description="OPSINTEL_ITSM_SERVICENOW_USERNAME: basic-auth user (with the password)."
    )
    itsm_servicenow_password: SecretStr = Field(
        SecretStr(""),
        description="OPSINTEL_ITSM_SERVICENOW_PASSWORD (or OPSINTEL_ITSM_SERVICENOW_PASSWORD_FILE): basic auth.",
    )
    itsm_servicenow_token: SecretStr = Field(
        SecretStr(""),
        description=(
            "OPSINTEL_ITSM_SERVICENOW_TOKEN (or OPSINTEL_ITSM_SERVICENOW_TOKEN_FILE): OAuth bearer token, "
            "instead of username + password."
        ),
    )
    itsm_servicenow_table: str = Field(
        "problem", description="OPSINTEL_ITSM_SERVICENOW_TABLE: Table API table the problems go to."
    )
    itsm_servicedesk_plus_url: str = Field(
        "", description="OPSINTEL_ITSM_SERVICEDESK_PLUS_URL: ServiceDesk Plus base URL (empty = off)."
    )
    itsm_servicedesk_plus_authtoken: SecretStr = Field(
        SecretStr(""),
        description=(
            "OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN (or OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN_FILE): "
            "technician API key of an on-premises install."
        ),
    )
    itsm_servicedesk_plus_oauth_token: SecretStr = Field(
        SecretStr(""),
        description=(
            "OPSINTEL_ITSM_SERVICEDESK_PLUS_OAUTH_TOKEN (or OPSINTEL_ITSM_SERVICEDESK_PLUS_OAUTH_TOKEN_FILE): "
            "Zoho OAuth token of ServiceDesk Plus Cloud, instead of the authtoken."
        ),
    )
    itsm_webhook_url: str = Field(
        "", description="OPSINTEL_ITSM_WEBHOOK_URL: URL every problem version is POSTed to, signed (empty = off)."
    )
    itsm_webhook_secret: SecretStr = Field(
        SecretStr(""),
        description=(
            "OPSINTEL_ITSM_WEBHOOK_SECRET (or OPSINTEL_ITSM_WEBHOOK_SECRET_FILE): HMAC-SHA256 signing secret "
            "of the ITSM webhook."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """Read ``OPSINTEL_<SECRET>_FILE`` when the secret itself is not set."""
        if not isinstance(data, dict):
            return data
        for name in _SECRET_FIELDS:
            path = os.environ.get(f"OPSINTEL_{name.upper()}_FILE")
            if path and not data.get(name):
                data[name] = Path(path).read_text().strip()
        return data

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_dsn(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("chdb", "http", "https"):
            raise ValueError("clickhouse_dsn must start with chdb://, http:// or https://")
        return v

    @field_validator("itsm_servicenow_url", "itsm_servicedesk_plus_url", "itsm_webhook_url")
    @classmethod
    def _check_itsm_url(cls, v: str) -> str:
        v = v.strip()
        if v and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname):
            raise ValueError("an ITSM URL must be http(s)://host[:port][/path]")
        if v and urlsplit(v).password is not None:
            raise ValueError("put ITSM credentials in their own settings, not in the URL")
        return v

    @model_validator(mode="after")
    def _check_itsm_credentials(self) -> Settings:
        """A configured ITSM target must have exactly one way to authenticate, so a worker never
        starts pushing with credentials the ITSM will refuse on every record."""
        if self.itsm_servicenow_url:
            basic = bool(self.itsm_servicenow_username or self.itsm_servicenow_password.get_secret_value())
            token = bool(self.itsm_servicenow_token.get_secret_value())
            if basic and token:
                raise ValueError("ServiceNow: set either OPSINTEL_ITSM_SERVICENOW_TOKEN or "
                                 "OPSINTEL_ITSM_SERVICENOW_USERNAME + _PASSWORD, not both")  # fmt: skip
            if not token and not (self.itsm_servicenow_username and self.itsm_servicenow_password.get_secret_value()):
                raise ValueError("OPSINTEL_ITSM_SERVICENOW_URL is set but its credentials are not: set "
                                 "OPSINTEL_ITSM_SERVICENOW_USERNAME + OPSINTEL_ITSM_SERVICENOW_PASSWORD(_FILE) "
                                 "or OPSINTEL_ITSM_SERVICENOW_TOKEN(_FILE)")  # fmt: skip
            if not self.itsm_servicenow_table.strip():
                raise ValueError("OPSINTEL_ITSM_SERVICENOW_TABLE must not be empty")
        if self.itsm_servicedesk_plus_url:
            given = [bool(self.itsm_servicedesk_plus_authtoken.get_secret_value()),
                     bool(self.itsm_servicedesk_plus_oauth_token.get_secret_value())]  # fmt: skip
            if sum(given) != 1:
                raise ValueError("OPSINTEL_ITSM_SERVICEDESK_PLUS_URL needs exactly one of "
                                 "OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN(_FILE) (on-premises) or "
                                 "OPSINTEL_ITSM_SERVICEDESK_PLUS_OAUTH_TOKEN(_FILE) (cloud)")  # fmt: skip
        if self.itsm_webhook_url and not self.itsm_webhook_secret.get_secret_value():
            raise ValueError("OPSINTEL_ITSM_WEBHOOK_URL is set but OPSINTEL_ITSM_WEBHOOK_SECRET(_FILE) is not: "
                             "every push is signed")  # fmt: skip
        return self

    # --- derived -------------------------------------------------------------------------------
    def topic(self, name: TopicName) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def effective_clickhouse_dsn(self) -> str:
        """The DSN in use: the configured one, or embedded chDB under ``data_dir``."""
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def uses_chdb(self) -> bool:
        return self.effective_clickhouse_dsn.startswith("chdb:")

    @property
    def web_url(self) -> str:
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host  # noqa: S104
        return f"http://{host}:{self.web_port}"

    @property
    def itsm_targets(self) -> list[str]:
        """Names of the configured ITSM targets (empty: the worker pushes nothing)."""
        urls = (("servicenow", self.itsm_servicenow_url), ("servicedesk_plus", self.itsm_servicedesk_plus_url),
                ("webhook", self.itsm_webhook_url))  # fmt: skip
        return [name for name, url in urls if url]

    def kafka_client_options(self) -> dict[str, Any]:
        """Options shared by kafka-python producers and admin clients."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            opts.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        if self.kafka_ssl_cafile:
            opts["ssl_cafile"] = self.kafka_ssl_cafile
        return opts

    def secret_values(self) -> list[str]:
        """Every secret in the settings (incl. a password inside the DSN), for log masking."""
        values = [getattr(self, name).get_secret_value() for name in _SECRET_FIELDS]
        password = urlsplit(self.clickhouse_dsn).password if self.clickhouse_dsn else None
        return [v for v in [*values, password or ""] if v]

    def redacted(self) -> dict[str, Any]:
        """Effective settings for display: secrets masked, credentials stripped from the DSN."""
        out = self.model_dump(mode="json")
        for name in _SECRET_FIELDS:
            out[name] = "********" if getattr(self, name).get_secret_value() else ""
        out["clickhouse_dsn"] = redact_dsn(self.effective_clickhouse_dsn)
        return out


def redact_dsn(dsn: str) -> str:
    """Drop the password from a DSN so it can be printed.

    >>> redact_dsn("https://admin:s3cret@ch.example:8443/db")
    'https://admin:***@ch.example:8443/db'
    """
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (used by the CLI and tests)."""
    return Settings(**overrides)
