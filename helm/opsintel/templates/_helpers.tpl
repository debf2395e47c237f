{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "opsintel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or just the release name when it already contains the chart name.
*/}}
{{- define "opsintel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "opsintel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Namespace of the release's resources.
*/}}
{{- define "opsintel.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every resource carries. helm.sh/chart and the version change on upgrades, so they stay out
of the selector labels (selectors are immutable).
*/}}
{{- define "opsintel.metaLabels" -}}
helm.sh/chart: {{ include "opsintel.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: opsintel
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "opsintel.instanceLabels" -}}
app.kubernetes.io/name: {{ include "opsintel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the worker pods: stable across upgrades.
*/}}
{{- define "opsintel.selectorLabels" -}}
{{ include "opsintel.instanceLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/*
Labels of the worker's resources.
*/}}
{{- define "opsintel.labels" -}}
{{ include "opsintel.metaLabels" . }}
{{ include "opsintel.selectorLabels" . }}
{{- end }}

{{/*
Labels of resources that are not the worker (migration Job, dashboards, test pod): another
component, so the worker's Service, PodDisruptionBudget and NetworkPolicy never select them.
Call with (dict "ctx" $ "component" "migration").
*/}}
{{- define "opsintel.componentLabels" -}}
{{ include "opsintel.metaLabels" .ctx }}
{{ include "opsintel.instanceLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
ServiceAccount name of the worker.
*/}}
{{- define "opsintel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsintel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest pins it, else the tag, else the chart's appVersion.
*/}}
{{- define "opsintel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when the embedded chDB store is used (no ClickHouse server DSN). Only one process may open
its data folder, which decides the replica count, the rollout strategy and where migrations run.
*/}}
{{- define "opsintel.embedded" -}}
{{- if not .Values.clickhouse.dsn }}true{{ end }}
{{- end }}

{{/*
Replicas of the worker Deployment: forced to 1 with embedded chDB.
*/}}
{{- define "opsintel.replicas" -}}
{{- if include "opsintel.embedded" . }}1{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Fail early on combinations that cannot work, with a message that says what to change.
*/}}
{{- define "opsintel.validate" -}}
{{- if include "opsintel.embedded" . }}
{{- if .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs a ClickHouse server (clickhouse.dsn): the embedded chDB store allows a single replica" }}
{{- end }}
{{- if .Values.grafana.datasource.enabled }}
{{- fail "grafana.datasource.enabled needs a ClickHouse server (clickhouse.dsn): Grafana cannot query the embedded chDB store" }}
{{- end }}
{{- else if and .Values.persistence.enabled (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "persistence.enabled with a ReadWriteOnce claim allows a single replica; with a ClickHouse server disable persistence (Faust restores its tables from the changelog topics)" }}
{{- end }}
{{- if ge (float64 .Values.worker.shutdownSeconds) (float64 .Values.worker.terminationGracePeriodSeconds) }}
{{- fail "worker.shutdownSeconds must be below worker.terminationGracePeriodSeconds: a worker still waiting for ClickHouse would be killed before it stops on its own" }}
{{- end }}
{{- if and (hasPrefix "SASL" .Values.kafka.securityProtocol) (not .Values.kafka.sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret (a Secret with the SASL password)" .Values.kafka.securityProtocol) }}
{{- end }}
{{- with .Values.itsm.servicenow }}
{{- if .url }}
{{- if or (not .existingSecret) (eq (empty .passwordKey) (empty .tokenKey)) }}
{{- fail "itsm.servicenow.url needs itsm.servicenow.existingSecret and exactly one of passwordKey (basic auth, with username) or tokenKey (OAuth bearer)" }}
{{- end }}
{{- if and .passwordKey (not .username) }}
{{- fail "itsm.servicenow.passwordKey (basic auth) needs itsm.servicenow.username" }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.itsm.servicedeskPlus }}
{{- if and .url (or (not .existingSecret) (eq (empty .authtokenKey) (empty .oauthTokenKey))) }}
{{- fail "itsm.servicedeskPlus.url needs itsm.servicedeskPlus.existingSecret and exactly one of authtokenKey (on-premises) or oauthTokenKey (cloud)" }}
{{- end }}
{{- end }}
{{- if and .Values.itsm.webhook.url (not .Values.itsm.webhook.existingSecret) }}
{{- fail "itsm.webhook.url needs itsm.webhook.existingSecret (a Secret with the signing secret)" }}
{{- end }}
{{- end }}

{{/*
Where secrets and the catalogue are mounted (files, read through OPSINTEL_*_FILE settings).
*/}}
{{- define "opsintel.dataDir" -}}/var/lib/opsintel{{- end }}
{{- define "opsintel.kafkaSaslDir" -}}/etc/opsintel/secrets/kafka-sasl{{- end }}
{{- define "opsintel.kafkaTlsDir" -}}/etc/opsintel/secrets/kafka-tls{{- end }}
{{- define "opsintel.clickhouseDir" -}}/etc/opsintel/secrets/clickhouse{{- end }}
{{- define "opsintel.webhookDir" -}}/etc/opsintel/secrets/webhook{{- end }}
{{- define "opsintel.itsmServicenowDir" -}}/etc/opsintel/secrets/itsm-servicenow{{- end }}
{{- define "opsintel.itsmServicedeskPlusDir" -}}/etc/opsintel/secrets/itsm-servicedesk-plus{{- end }}
{{- define "opsintel.itsmWebhookDir" -}}/etc/opsintel/secrets/itsm-webhook{{- end }}
{{- define "opsintel.catalogDir" -}}/etc/opsintel/catalog{{- end }}

{{/*
The worker's settings as a YAML map of OPSINTEL_* variables to strings. The settings ConfigMap
holds them for the worker; the migration hook Job sets them inline, because pre-install hooks run
before the ConfigMap exists.
*/}}
{{- define "opsintel.settings" -}}
OPSINTEL_KAFKA_BOOTSTRAP: {{ .Values.kafka.bootstrap | quote }}
OPSINTEL_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
OPSINTEL_KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
OPSINTEL_KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
{{- if .Values.kafka.sasl.existingSecret }}
OPSINTEL_KAFKA_SASL_PASSWORD_FILE: {{ printf "%s/password" (include "opsintel.kafkaSaslDir" .) | quote }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
OPSINTEL_KAFKA_SSL_CAFILE: {{ printf "%s/ca.crt" (include "opsintel.kafkaTlsDir" .) | quote }}
{{- end }}
OPSINTEL_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
OPSINTEL_PARTITIONS: {{ .Values.kafka.partitions | int64 | quote }}
OPSINTEL_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | int64 | quote }}
OPSINTEL_CONSUMER_GROUP: {{ .Values.kafka.consumerGroup | quote }}
OPSINTEL_CLICKHOUSE_DSN: {{ .Values.clickhouse.dsn | quote }}
OPSINTEL_CLICKHOUSE_DATABASE: {{ .Values.clickhouse.database | quote }}
OPSINTEL_CLICKHOUSE_CLUSTER: {{ .Values.clickhouse.cluster | quote }}
{{- if .Values.clickhouse.existingSecret }}
OPSINTEL_CLICKHOUSE_PASSWORD_FILE: {{ printf "%s/password" (include "opsintel.clickhouseDir" .) | quote }}
{{- end }}
OPSINTEL_DATA_DIR: {{ include "opsintel.dataDir" . | quote }}
OPSINTEL_BATCH_SIZE: {{ .Values.worker.batchSize | int64 | quote }}
OPSINTEL_BATCH_SECONDS: {{ .Values.worker.batchSeconds | quote }}
OPSINTEL_FLUSH_SECONDS: {{ .Values.worker.flushSeconds | quote }}
OPSINTEL_SHUTDOWN_SECONDS: {{ .Values.worker.shutdownSeconds | quote }}
OPSINTEL_ENCODE_PROCESS: {{ .Values.worker.encodeProcess | quote }}
OPSINTEL_WEB_HOST: "0.0.0.0"
OPSINTEL_WEB_PORT: {{ .Values.worker.port | int64 | quote }}
{{- if .Values.webhook.existingSecret }}
OPSINTEL_WEBHOOK_TOKEN_FILE: {{ printf "%s/token" (include "opsintel.webhookDir" .) | quote }}
{{- end }}
OPSINTEL_WEBHOOK_MAX_BYTES: {{ .Values.webhook.maxBytes | int64 | quote }}
OPSINTEL_SERVICE_FIELD: {{ .Values.worker.serviceField | quote }}
{{- if .Values.serviceCatalog }}
OPSINTEL_SERVICE_CATALOG: {{ printf "%s/services.yaml" (include "opsintel.catalogDir" .) | quote }}
{{- end }}
OPSINTEL_LOG_LEVEL: {{ .Values.worker.logLevel | quote }}
{{- with .Values.itsm.servicenow }}
OPSINTEL_ITSM_SERVICENOW_URL: {{ .url | quote }}
OPSINTEL_ITSM_SERVICENOW_USERNAME: {{ .username | quote }}
OPSINTEL_ITSM_SERVICENOW_TABLE: {{ .table | quote }}
{{- if and .existingSecret .passwordKey }}
OPSINTEL_ITSM_SERVICENOW_PASSWORD_FILE: {{ printf "%s/password" (include "opsintel.itsmServicenowDir" $) | quote }}
{{- end }}
{{- if and .existingSecret .tokenKey }}
OPSINTEL_ITSM_SERVICENOW_TOKEN_FILE: {{ printf "%s/token" (include "opsintel.itsmServicenowDir" $) | quote }}
{{- end }}
{{- end }}
{{- with .Values.itsm.servicedeskPlus }}
OPSINTEL_ITSM_SERVICEDESK_PLUS_URL: {{ .url | quote }}
{{- if and .existingSecret .authtokenKey }}
OPSINTEL_ITSM_SERVICEDESK_PLUS_AUTHTOKEN_FILE: {{ printf "%s/authtoken" (include "opsintel.itsmServicedeskPlusDir" $) | quote }}
{{- end }}
{{- if and .existingSecret .oauthTokenKey }}
OPSINTEL_ITSM_SERVICEDESK_PLUS_OAUTH_TOKEN_FILE: {{ printf "%s/oauth-token" (include "opsintel.itsmServicedeskPlusDir" $) | quote }}
{{- end }}
{{- end }}
OPSINTEL_ITSM_WEBHOOK_URL: {{ .Values.itsm.webhook.url | quote }}
{{- if .Values.itsm.webhook.existingSecret }}
OPSINTEL_ITSM_WEBHOOK_SECRET_FILE: {{ printf "%s/secret" (include "opsintel.itsmWebhookDir" .) | quote }}
{{- end }}
{{- end }}

{{/*
Secret volumes (existingSecret pattern): each key projected to a fixed file name, so the *_FILE
paths above do not depend on the key names users chose.
*/}}
{{- define "opsintel.secretVolumes" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  secret:
    secretName: {{ .Values.kafka.sasl.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.sasl.passwordKey }}
        path: password
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- if .Values.clickhouse.existingSecret }}
- name: clickhouse
  secret:
    secretName: {{ .Values.clickhouse.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.clickhouse.passwordKey }}
        path: password
{{- end }}
{{- if .Values.webhook.existingSecret }}
- name: webhook
  secret:
    secretName: {{ .Values.webhook.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.webhook.tokenKey }}
        path: token
{{- end }}
{{- with .Values.itsm.servicenow }}
{{- if and .existingSecret (or .passwordKey .tokenKey) }}
- name: itsm-servicenow
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      {{- if .passwordKey }}
      - key: {{ .passwordKey }}
        path: password
      {{- end }}
      {{- if .tokenKey }}
      - key: {{ .tokenKey }}
        path: token
      {{- end }}
{{- end }}
{{- end }}
{{- with .Values.itsm.servicedeskPlus }}
{{- if and .existingSecret (or .authtokenKey .oauthTokenKey) }}
- name: itsm-servicedesk-plus
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      {{- if .authtokenKey }}
      - key: {{ .authtokenKey }}
        path: authtoken
      {{- end }}
      {{- if .oauthTokenKey }}
      - key: {{ .oauthTokenKey }}
        path: oauth-token
      {{- end }}
{{- end }}
{{- end }}
{{- if .Values.itsm.webhook.existingSecret }}
- name: itsm-webhook
  secret:
    secretName: {{ .Values.itsm.webhook.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.itsm.webhook.secretKey }}
        path: secret
{{- end }}
{{- end }}

{{- define "opsintel.secretVolumeMounts" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: kafka-sasl
  mountPath: {{ include "opsintel.kafkaSaslDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "opsintel.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.clickhouse.existingSecret }}
- name: clickhouse
  mountPath: {{ include "opsintel.clickhouseDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.webhook.existingSecret }}
- name: webhook
  mountPath: {{ include "opsintel.webhookDir" . }}
  readOnly: true
{{- end }}
{{- with .Values.itsm.servicenow }}
{{- if and .existingSecret (or .passwordKey .tokenKey) }}
- name: itsm-servicenow
  mountPath: {{ include "opsintel.itsmServicenowDir" $ }}
  readOnly: true
{{- end }}
{{- end }}
{{- with .Values.itsm.servicedeskPlus }}
{{- if and .existingSecret (or .authtokenKey .oauthTokenKey) }}
- name: itsm-servicedesk-plus
  mountPath: {{ include "opsintel.itsmServicedeskPlusDir" $ }}
  readOnly: true
{{- end }}
{{- end }}
{{- if .Values.itsm.webhook.existingSecret }}
- name: itsm-webhook
  mountPath: {{ include "opsintel.itsmWebhookDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The ClickHouse server behind clickhouse.dsn, as a dict: protocol, secure, host, port, username.
*/}}
{{- define "opsintel.clickhouseServer" -}}
{{- $u := urlParse .Values.clickhouse.dsn }}
{{- $secure := eq $u.scheme "https" }}
{{- $hostport := splitList ":" $u.host }}
{{- $port := ternary "8443" "8123" $secure }}
{{- if gt (len $hostport) 1 }}{{ $port = last $hostport }}{{ end }}
protocol: http
secure: {{ $secure }}
host: {{ first $hostport | quote }}
port: {{ $port }}
username: {{ (splitList ":" $u.userinfo | first) | default "default" | quote }}
{{- end }}
