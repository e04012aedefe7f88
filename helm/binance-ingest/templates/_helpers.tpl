{{/* Names and labels shared by every template. */}}

{{- define "binance-ingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "binance-ingest.fullname" -}}
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

{{- define "binance-ingest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selects every pod of the release (worker and seeding Job); the NetworkPolicy uses it. */}}
{{- define "binance-ingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "binance-ingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects only the worker pods (Deployment, Service, PDB, topology spread). */}}
{{- define "binance-ingest.workerSelectorLabels" -}}
{{ include "binance-ingest.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "binance-ingest.labels" -}}
helm.sh/chart: {{ include "binance-ingest.chart" . }}
{{ include "binance-ingest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: binance-ingest
{{- end }}

{{- define "binance-ingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "binance-ingest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "binance-ingest.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the Kafka TLS Secret is mounted; the INGEST_KAFKA_SSL_*_LOCATION settings point here. */}}
{{- define "binance-ingest.kafkaTlsDir" -}}/etc/binance-ingest/kafka-tls{{- end }}

{{/*
Renders one setting value as the string the worker parses: lists joined with commas, whole numbers
without Helm's float formatting (604800000 would otherwise become "6.048e+08"), booleans as true/false.
*/}}
{{- define "binance-ingest.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Every non-secret setting as env name -> string value, as YAML: the seeding Job (a pre-install hook, which
runs before the ConfigMap exists) inlines this map; the worker reads the same settings from its config file.
config.<camelCase> becomes INGEST_<UPPER_SNAKE>, the name ingest/config.py derives from the option.
*/}}
{{- define "binance-ingest.settings" -}}
{{- $env := dict }}
{{- range $key, $value := .Values.config }}
{{- $_ := set $env (printf "INGEST_%s" ($key | snakecase | upper)) (include "binance-ingest.envValue" $value) }}
{{- end }}
{{- with .Values.coordination }}
{{- if .enabled }}
{{- $_ := set $env "INGEST_COORDINATION" "kafka" }}
{{- $_ := set $env "INGEST_COORDINATION_SHARDS" (include "binance-ingest.envValue" (.shards | default 12)) }}
{{- $_ := set $env "INGEST_COORDINATION_SESSION_TIMEOUT_S" (include "binance-ingest.envValue" (.sessionTimeoutS | default 10)) }}
{{- if .group }}
{{- $_ := set $env "INGEST_COORDINATION_GROUP" .group }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set $env "KAFKA_BOOTSTRAP_SERVERS" .Values.kafka.bootstrapServers }}
{{- $_ := set $env "SCHEMA_REGISTRY_URL" .Values.schemaRegistry.url }}
{{- $_ := set $env "INGEST_KAFKA_SECURITY_PROTOCOL" .Values.kafka.securityProtocol }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- $_ := set $env "INGEST_KAFKA_SASL_MECHANISM" .Values.kafka.sasl.mechanism }}
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
{{- $dir := include "binance-ingest.kafkaTlsDir" $ }}
{{- $_ := set $env "INGEST_KAFKA_SSL_CA_LOCATION" (printf "%s/%s" $dir .caKey) }}
{{- if .certKey }}
{{- $_ := set $env "INGEST_KAFKA_SSL_CERTIFICATE_LOCATION" (printf "%s/%s" $dir .certKey) }}
{{- $_ := set $env "INGEST_KAFKA_SSL_KEY_LOCATION" (printf "%s/%s" $dir .keyKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.kafka.properties }}
{{- $_ := set $env (printf "INGEST_KAFKA_%s" ($name | replace "." "_" | upper)) $value }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Where the worker's config file (the ConfigMap's config.yaml) is mounted; `ingest run --config` reads it. */}}
{{- define "binance-ingest.configDir" -}}/etc/binance-ingest/config{{- end }}

{{/*
The worker's YAML config file (`ingest run --config`, see docs/configuration.md): every non-secret setting under
its option name, typed (lists as lists, numbers as numbers: toYaml goes through JSON, so 604800000 stays
604800000), and the librdkafka properties under `kafka:`. config.<camelCase> becomes <snake_case>, the option's
name in ingest/config.py. Secrets stay environment variables from Secrets (binance-ingest.secretEnv), which win
over the file; so does INGEST_METRICS_PORT (binance-ingest.workerEnv), left out of the file because the image's
HEALTHCHECK reads it from the environment. The seeding Job, a hook that runs before this ConfigMap exists, gets the same settings as env
vars (binance-ingest.settings); a contract test loads both and compares.
*/}}
{{- define "binance-ingest.configFile" -}}
{{- $file := dict }}
{{- range $key, $value := omit .Values.config "metricsPort" }}
{{- $_ := set $file ($key | snakecase) $value }}
{{- end }}
{{- with .Values.coordination }}
{{- if .enabled }}
{{- $_ := set $file "coordination" "kafka" }}
{{- $_ := set $file "coordination_shards" (.shards | default 12) }}
{{- $_ := set $file "coordination_session_timeout_s" (.sessionTimeoutS | default 10) }}
{{- if .group }}
{{- $_ := set $file "coordination_group" .group }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set $file "bootstrap_servers" .Values.kafka.bootstrapServers }}
{{- $_ := set $file "schema_registry_url" .Values.schemaRegistry.url }}
{{- $kafka := dict "security.protocol" .Values.kafka.securityProtocol }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- $_ := set $kafka "sasl.mechanism" .Values.kafka.sasl.mechanism }}
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
{{- $dir := include "binance-ingest.kafkaTlsDir" $ }}
{{- $_ := set $kafka "ssl.ca.location" (printf "%s/%s" $dir .caKey) }}
{{- if .certKey }}
{{- $_ := set $kafka "ssl.certificate.location" (printf "%s/%s" $dir .certKey) }}
{{- $_ := set $kafka "ssl.key.location" (printf "%s/%s" $dir .keyKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.kafka.properties }}
{{- $_ := set $kafka $name $value }}
{{- end }}
{{- $_ := set $file "kafka" $kafka }}
{{- toYaml $file }}
{{- end }}

{{/* The worker container's env: the metrics port, which the image's HEALTHCHECK (docker/podman runs of the
image; Kubernetes uses the probes) reads from INGEST_METRICS_PORT, then the Secrets. */}}
{{- define "binance-ingest.workerEnv" -}}
- name: INGEST_METRICS_PORT
  value: {{ .Values.config.metricsPort | int64 | quote }}
{{ include "binance-ingest.secretEnv" . }}
{{- end }}

{{/* Env entries read from existing Secrets (SASL credentials, registry basic auth). */}}
{{- define "binance-ingest.secretEnv" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
- name: INGEST_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: INGEST_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.schemaRegistry.auth.existingSecret }}
- name: INGEST_SCHEMA_REGISTRY_USER_INFO
  valueFrom:
    secretKeyRef:
      name: {{ .Values.schemaRegistry.auth.existingSecret }}
      key: {{ .Values.schemaRegistry.auth.userInfoKey }}
{{- end }}
{{- end }}

{{/* Volumes shared by the worker and the Job: a writable /tmp and the Kafka TLS files. */}}
{{- define "binance-ingest.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .caKey }}
        path: {{ .caKey }}
      {{- if .certKey }}
      - key: {{ .certKey }}
        path: {{ .certKey }}
      - key: {{ .keyKey }}
        path: {{ .keyKey }}
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "binance-ingest.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "binance-ingest.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}
