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

{{/* Keys (server/auth.h) from their Secrets, mounted as files: the kubelet
updates a mounted Secret in place and the processes re-read the files, so a
key rotates without a restart. Called with (dict "root" . "api" BOOL), `api`
for pods that serve the public API; each is empty when its Secret is unset. */}}
{{- define "tokenfab.keyArgs" -}}
{{- if and .api .root.Values.auth.apiKeySecret }}
- --api-key-file=/etc/tokenfab/api-keys/keys
{{- end }}
{{- if .root.Values.auth.clusterKeySecret }}
- --cluster-key-file=/etc/tokenfab/cluster-key/key
{{- end }}
{{- if and .api .root.Values.auth.tlsSecret }}
- --tls-cert-file=/etc/tokenfab/tls/tls.crt
- --tls-key-file=/etc/tokenfab/tls/tls.key
{{- end }}
{{- end -}}
{{- define "tokenfab.keyMounts" -}}
{{- if and .api .root.Values.auth.apiKeySecret }}
- {name: api-keys, mountPath: /etc/tokenfab/api-keys, readOnly: true}
{{- end }}
{{- if .root.Values.auth.clusterKeySecret }}
- {name: cluster-key, mountPath: /etc/tokenfab/cluster-key, readOnly: true}
{{- end }}
{{- if and .api .root.Values.auth.tlsSecret }}
- {name: tls, mountPath: /etc/tokenfab/tls, readOnly: true}
- {name: tls-runtime, mountPath: /run/tokenfab-tls}
{{- end }}
{{- end -}}
{{- define "tokenfab.keyVolumes" -}}
{{- if and .api .root.Values.auth.apiKeySecret }}
- name: api-keys
  secret: {secretName: {{ .root.Values.auth.apiKeySecret | quote }}, defaultMode: 0440}
{{- end }}
{{- if .root.Values.auth.clusterKeySecret }}
- name: cluster-key
  secret: {secretName: {{ .root.Values.auth.clusterKeySecret | quote }}, defaultMode: 0440}
{{- end }}
{{- if and .api .root.Values.auth.tlsSecret }}
- name: tls
  secret: {secretName: {{ .root.Values.auth.tlsSecret | quote }}, defaultMode: 0440}
# The root file system is read-only: the private copy gRPC reads goes here
# (TMPDIR), in memory, so it never reaches a disk.
- name: tls-runtime
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- end }}
{{- end -}}
