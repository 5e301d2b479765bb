{{/* Common labels of this chart's own resources. */}}
{{- define "mlkkr.labels" -}}
app.kubernetes.io/part-of: mlkkr
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mlkkr.selector" -}}
app.kubernetes.io/part-of: mlkkr
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The claim of the shared store. */}}
{{- define "mlkkr.storeClaim" -}}
{{- .Values.store.existingClaim | default .Values.store.claimName -}}
{{- end -}}

{{/* A password kept across upgrades: the existing Secret's value, else a new random one. */}}
{{- define "mlkkr.password" -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $secret (index $secret.data .key) -}}
{{- index $secret.data .key -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}
