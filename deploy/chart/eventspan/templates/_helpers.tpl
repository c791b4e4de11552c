{{/* The chart's name, for app.kubernetes.io/name. */}}
{{- define "eventspan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: the release's when it already contains the chart's (a release named eventspan
gives the kustomize base's names), otherwise RELEASE-eventspan.
*/}}
{{- define "eventspan.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "eventspan.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eventspan.serviceAccountName" -}}
{{- default (include "eventspan.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "eventspan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventspan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eventspan.labels" -}}
{{ include "eventspan.selectorLabels" . }}
app.kubernetes.io/part-of: eventspan
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
`eventspan run`'s arguments. A setting left empty passes no flag, so the binary's default holds
and the defaults render the kustomize base's args. `kindIs "invalid"` is how a template sees
null; a plain `if` would also drop 0, which `--checkpoint-interval` takes.
*/}}
{{- define "eventspan.args" -}}
{{- $v := .Values }}
{{- $args := list "run" "--log-format" $v.logFormat }}
{{- if not $v.leaderElection.enabled }}
{{- $args = append $args "--leader-election=false" }}
{{- end }}
{{- /* Durations and the Lease name: "" or null when unset; 0 (from --set) is a duration. */}}
{{- $strings := list
  (list "lease-name" $v.leaderElection.leaseName)
  (list "window" $v.engine.window)
  (list "horizon" $v.engine.horizon)
  (list "max-event-age" $v.engine.maxEventAge)
  (list "checkpoint-interval" $v.engine.checkpointInterval)
  (list "exporter-max-backoff" $v.exporter.maxBackoff)
  (list "max-session-window" $v.limits.maxSessionWindow) }}
{{- range $strings }}
{{- $value := index . 1 }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{- $args = append $args (printf "--%s=%v" (index . 0) $value) }}
{{- end }}
{{- end }}
{{- /* Values files hold numbers as float64: %d of int64 keeps 1000000 from printing as 1e+06. */}}
{{- $counts := list
  (list "exporter-queue" $v.exporter.queue)
  (list "max-sessions-per-namespace" $v.limits.maxSessionsPerNamespace)
  (list "max-exporters-per-session" $v.limits.maxExportersPerSession) }}
{{- range $counts }}
{{- if not (kindIs "invalid" (index . 1)) }}
{{- $args = append $args (printf "--%s=%d" (index . 0) (int64 (index . 1))) }}
{{- end }}
{{- end }}
{{- range $v.adminNamespaces }}
{{- $args = append $args (printf "--admin-namespace=%s" .) }}
{{- end }}
{{- range $v.exporterPolicy.allow }}
{{- $args = append $args (printf "--exporter-allow=%s" .) }}
{{- end }}
{{- range $v.exporterPolicy.deny }}
{{- $args = append $args (printf "--exporter-deny=%s" .) }}
{{- end }}
{{- if not $v.exporterPolicy.defaultDeny }}
{{- $args = append $args "--exporter-default-deny=false" }}
{{- end }}
{{- if $v.exporterPolicy.allowPlaintextSecretHeaders }}
{{- $args = append $args "--allow-plaintext-secret-headers" }}
{{- end }}
{{- toJson $args }}
{{- end }}
