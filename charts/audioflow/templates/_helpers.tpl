{{/*
Names. Every name is cut to 63 characters (DNS label limit); a component's name keeps its suffix whole.
*/}}
{{- define "audioflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "audioflow.fullname" -}}
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
<fullname>-<suffix>, cut so that the whole stays within 63 characters.
Usage: include "audioflow.componentName" (dict "context" $ "component" "gateway")
*/}}
{{- define "audioflow.componentName" -}}
{{- $prefix := include "audioflow.fullname" .context | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix .component }}
{{- end }}

{{- define "audioflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Selectors are name + instance (+ component), never the version: selectors are immutable.
Usage: include "audioflow.labels" (dict "context" $ "component" "gateway"); component may be omitted.
*/}}
{{- define "audioflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "audioflow.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "audioflow.labels" -}}
helm.sh/chart: {{ include "audioflow.chart" .context }}
{{ include "audioflow.selectorLabels" . }}
{{- with .context.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/part-of: audioflow
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- end }}

{{/*
Names of the per-component objects.
*/}}
{{- define "audioflow.gateway.fullname" -}}
{{- include "audioflow.componentName" (dict "context" . "component" "gateway") }}
{{- end }}

{{- define "audioflow.processing.fullname" -}}
{{- include "audioflow.componentName" (dict "context" . "component" "processing") }}
{{- end }}

{{- define "audioflow.concat.fullname" -}}
{{- include "audioflow.componentName" (dict "context" . "component" "concat") }}
{{- end }}

{{- define "audioflow.operator.fullname" -}}
{{- include "audioflow.componentName" (dict "context" . "component" "operator") }}
{{- end }}

{{- define "audioflow.configName" -}}
{{- include "audioflow.componentName" (dict "context" . "component" "config") }}
{{- end }}

{{- define "audioflow.dataClaimName" -}}
{{- default (include "audioflow.componentName" (dict "context" . "component" "data")) .Values.persistence.existingClaim }}
{{- end }}

{{/* The chart's own Secret: connection URLs, and the webhook secret and API token unless existing. */}}
{{- define "audioflow.secretName" -}}
{{- include "audioflow.fullname" . }}
{{- end }}

{{/*
The generated webhook-secret and api-token (base64, as in the Secret's data): the live Secret's when there
is one, so that an upgrade keeps them, else new random ones. Made once per render and remembered on the
root context, so that the Secret and every pod's checksum/secret annotation (which renders secret.yaml
again) see the same values: otherwise the checksum at install hashes other random values than the stored
ones, and the first upgrade, even one that changes nothing, rolls every pod.
*/}}
{{- define "audioflow.generatedAuth" -}}
{{- if not (hasKey . "audioflowGeneratedAuth") }}
{{- $live := (lookup "v1" "Secret" .Release.Namespace (include "audioflow.secretName" .)).data | default dict }}
{{- $_ := set . "audioflowGeneratedAuth" (dict
  "webhook-secret" (index $live "webhook-secret" | default (printf "whsec_%s" (randBytes 32) | b64enc))
  "api-token" (index $live "api-token" | default (randAlphaNum 40 | b64enc))
  "admin-token" (index $live "admin-token" | default (randAlphaNum 40 | b64enc))) }}
{{- end }}
{{- toYaml .audioflowGeneratedAuth }}
{{- end }}

{{/* The Secret holding webhook-secret, api-token and admin-token. */}}
{{- define "audioflow.authSecretName" -}}
{{- default (include "audioflow.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
A component's ServiceAccount name.
Usage: include "audioflow.serviceAccountName" (dict "context" $ "component" "gateway" "values" .Values.gateway)
*/}}
{{- define "audioflow.serviceAccountName" -}}
{{- if .values.serviceAccount.create }}
{{- default (include "audioflow.componentName" (dict "context" .context "component" .component)) .values.serviceAccount.name }}
{{- else }}
{{- default "default" .values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: [global.imageRegistry/]repository:tag (tag defaults to the chart's appVersion).
Usage: include "audioflow.image" (dict "context" $ "image" .Values.gateway.image)
*/}}
{{- define "audioflow.image" -}}
{{- $repository := .image.repository }}
{{- with .context.Values.global.imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- printf "%s:%s" $repository (default .context.Chart.AppVersion .image.tag) }}
{{- end }}

{{/*
Security contexts: the global ones with the component's merged over them.
Usage: include "audioflow.podSecurityContext" (dict "context" $ "values" .Values.gateway)
*/}}
{{- define "audioflow.podSecurityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .context.Values.global.podSecurityContext) (deepCopy (default dict .values.podSecurityContext))) }}
{{- end }}

{{- define "audioflow.securityContext" -}}
{{- toYaml (mergeOverwrite (deepCopy .context.Values.global.securityContext) (deepCopy (default dict .values.securityContext))) }}
{{- end }}

{{/* Pod annotations that roll the pods when the configuration or the Secret changes. */}}
{{- define "audioflow.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum | quote }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum | trunc 16 | quote }}
{{- end }}

{{/*
Environment shared by the gateway and the workers: the ConfigMap, then the connection URLs from Secrets.
*/}}
{{- define "audioflow.connectionEnv" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "audioflow.secretName" .) .Values.redis.existingSecret }}
      key: {{ ternary .Values.redis.existingSecretKey "redis-url" (ne .Values.redis.existingSecret "") }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "audioflow.secretName" .) .Values.database.existingSecret }}
      key: {{ ternary .Values.database.existingSecretKey "database-url" (ne .Values.database.existingSecret "") }}
{{- end }}

{{- define "audioflow.apiTokenEnv" -}}
- name: AUDIOFLOW_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "audioflow.authSecretName" . }}
      key: api-token
{{- end }}

{{/* The admin token: creates, ends and deletes meetings (the gateway checks it, the operator uses it). */}}
{{- define "audioflow.adminTokenEnv" -}}
- name: AUDIOFLOW_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "audioflow.authSecretName" . }}
      key: admin-token
{{- end }}

{{- define "audioflow.webhookSecretEnv" -}}
- name: AUDIOFLOW_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "audioflow.authSecretName" . }}
      key: webhook-secret
{{- end }}

{{/* The shared data volume and the writable /tmp (the root filesystem is read-only). */}}
{{- define "audioflow.volumes" -}}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "audioflow.dataClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "audioflow.volumeMounts" -}}
- name: data
  mountPath: {{ .Values.persistence.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
The autoscaling contract read by the operator: the label selects the Deployment, the annotations give the
stream, the consumer group and the policy.
Usage: include "audioflow.autoscaleAnnotations" (dict "context" $ "values" .Values.workers.processing "stream" "transcribe" "group" "processing")
*/}}
{{- define "audioflow.autoscaleAnnotations" -}}
{{- $a := .values.autoscale }}
audioflow.io/stream: {{ printf "%s%s" .context.Values.global.redisPrefix .stream | quote }}
audioflow.io/group: {{ .group | quote }}
audioflow.io/min-replicas: {{ $a.min | quote }}
audioflow.io/max-replicas: {{ $a.max | quote }}
audioflow.io/target-backlog: {{ $a.targetBacklog | quote }}
audioflow.io/scale-down-window-s: {{ $a.scaleDownWindowSeconds | quote }}
audioflow.io/cooldown-s: {{ $a.cooldownSeconds | quote }}
{{- end }}
