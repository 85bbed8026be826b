{{/*
A worker's Deployment, ServiceAccount, metrics Service and PodDisruptionBudget; the folders
worker-processing/ and worker-concat/ include these with their own values.
Usage: include "audioflow.worker.deployment" (dict "context" $ "kind" "processing" "stream" "transcribe" "values" .Values.workers.processing "env" (list ...))
*/}}
{{- define "audioflow.worker.deployment" -}}
{{- $ctx := .context }}
{{- $v := .values }}
{{- $component := dict "context" $ctx "component" .kind }}
{{- if gt (int $v.autoscale.min) (int $v.autoscale.max) }}
{{- fail (printf "workers.%s.autoscale: min (%v) must not exceed max (%v)" .kind $v.autoscale.min $v.autoscale.max) }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "audioflow.componentName" $component }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "audioflow.labels" $component | nindent 4 }}
    {{- if $v.autoscale.enabled }}
    audioflow.io/autoscale: "true"
    {{- end }}
  {{- if $v.autoscale.enabled }}
  annotations:
    {{- include "audioflow.autoscaleAnnotations" (dict "context" $ctx "values" $v "stream" .stream "group" .kind) | nindent 4 }}
  {{- end }}
spec:
  {{- if not $v.autoscale.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  {{- /* With autoscale on, spec.replicas belongs to the operator: leaving it out keeps upgrades from
  resetting it (the API server defaults a new Deployment to 1). */}}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "audioflow.selectorLabels" $component | nindent 6 }}
  template:
    metadata:
      annotations:
        {{- include "audioflow.checksums" $ctx | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "audioflow.labels" $component | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "audioflow.serviceAccountName" (dict "context" $ctx "component" .kind "values" $v) }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $ctx.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "audioflow.podSecurityContext" (dict "context" $ctx "values" $v) | nindent 8 }}
      containers:
        - name: {{ .kind }}
          image: {{ include "audioflow.image" (dict "context" $ctx "image" $v.image) }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["worker", {{ .kind | quote }}]
          ports:
            - name: metrics
              containerPort: {{ $v.metrics.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "audioflow.configName" $ctx }}
          env:
            {{- include "audioflow.connectionEnv" $ctx | nindent 12 }}
            - name: AUDIOFLOW_METRICS_PORT
              value: {{ $v.metrics.port | quote }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- /* The metrics server answers as long as the process lives; a worker that cannot reach Redis
          exits on its own and is restarted. */}}
          livenessProbe:
            tcpSocket:
              port: metrics
            periodSeconds: 20
            timeoutSeconds: 3
            failureThreshold: 3
          startupProbe:
            tcpSocket:
              port: metrics
            periodSeconds: 2
            failureThreshold: 60
          securityContext:
            {{- include "audioflow.securityContext" (dict "context" $ctx "values" $v) | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- include "audioflow.volumeMounts" $ctx | nindent 12 }}
      volumes:
        {{- include "audioflow.volumes" $ctx | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{- define "audioflow.worker.service" -}}
{{- $component := dict "context" .context "component" .kind }}
{{- /* Headless: it exists for the ServiceMonitor, which scrapes every worker pod. */}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "audioflow.componentName" $component }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "audioflow.labels" $component | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "audioflow.selectorLabels" $component | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .values.metrics.port }}
      targetPort: metrics
      protocol: TCP
{{- end }}

{{- define "audioflow.worker.serviceAccount" -}}
{{- if .values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "audioflow.serviceAccountName" (dict "context" .context "component" .kind "values" .values) }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "audioflow.labels" (dict "context" .context "component" .kind) | nindent 4 }}
  {{- with .values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end }}

{{- define "audioflow.worker.pdb" -}}
{{- if .values.pdb.enabled }}
{{- $component := dict "context" .context "component" .kind }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "audioflow.componentName" $component }}
  namespace: {{ .context.Release.Namespace }}
  labels:
    {{- include "audioflow.labels" $component | nindent 4 }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "audioflow.selectorLabels" $component | nindent 6 }}
{{- end }}
{{- end }}
