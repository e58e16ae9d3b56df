{{/* Names: "<release>-tokenfab", or the release name when it says tokenfab. */}}
{{- define "tokenfab.fullname" -}}
{{- if contains "tokenfab" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tokenfab" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tokenfab.labels" -}}
app.kubernetes.io/name: tokenfab
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (router, worker). */}}
{{- define "tokenfab.selector" -}}
app.kubernetes.io/name: tokenfab
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tokenfab.image" -}}
{{ printf "%s:%s" .Values.image.repository (toString .Values.image.tag) }}
{{- end -}}

{{- define "tokenfab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenfab.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The headless Service every router pod is behind, as workers dial it. */}}
{{- define "tokenfab.routerInternalHost" -}}
{{ printf "%s-router-internal.%s.svc" (include "tokenfab.fullname" .) .Release.Namespace }}
{{- end -}}

{{/* The model volume and its mount, when model.volume is set. */}}
{{- define "tokenfab.modelVolume" -}}
{{- if .Values.model.volume -}}
- name: models
  {{- toYaml .Values.model.volume | nindent 2 }}
{{- end }}
{{- end -}}
{{- define "tokenfab.modelMount" -}}
{{- if .Values.model.volume -}}
- name: models
  mountPath: {{ .Values.model.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod security shared by routers and workers: the image's unprivileged user. */}}
{{- define "tokenfab.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "tokenfab.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The cluster key from its Secret, for routers and workers (empty when unset). */}}
{{- define "tokenfab.clusterKeyEnv" -}}
{{- with .Values.auth.clusterKeySecret -}}
- name: TOKENFAB_CLUSTER_KEY
  valueFrom: {secretKeyRef: {name: {{ . | quote }}, key: key}}
{{- end -}}
{{- end -}}
