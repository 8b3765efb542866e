{{/* Name of the chart, or nameOverride. */}}
{{- define "stepwise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, else the release name
when it already contains the chart name, else "<release>-<chart>".
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry it too, so
two releases never share them.
*/}}
{{- define "stepwise.fullname" -}}
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

{{- define "stepwise.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "stepwise.labels" -}}
helm.sh/chart: {{ include "stepwise.chart" . }}
{{ include "stepwise.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: stepwise
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; never change them in an upgrade. */}}
{{- define "stepwise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stepwise.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stepwise.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stepwise.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stepwise.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "stepwise.leaseName" -}}
{{- default (include "stepwise.fullname" .) .Values.leaderElection.id }}
{{- end }}

{{/* Refuses value combinations that the schema cannot express. */}}
{{- define "stepwise.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without a Lease every replica would act on the same releases" }}
{{- end }}
{{- if and .Values.pdb.enabled (not (kindIs "invalid" .Values.pdb.minAvailable)) (not (kindIs "invalid" .Values.pdb.maxUnavailable)) }}
{{- fail "pdb: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}

{{/*
The permissions the operator needs on the namespaced API, shared by the
ClusterRole (all namespaces) and the Role (watchNamespace). Each rule says
why; keep them in step with what src/controller does against the API.
*/}}
{{- define "stepwise.rules" -}}
# The Deployment and Step controllers list and watch both kinds into their
# caches (a Deployment owns its Steps) and get one object when reconciling.
- apiGroups: ["stepwise.dev"]
  resources: ["deployments", "steps"]
  verbs: ["get", "list", "watch"]
# The Deployment controller starts each step of a release by creating its
# Step object.
- apiGroups: ["stepwise.dev"]
  resources: ["steps"]
  verbs: ["create"]
# Once the Step controller has recorded a person's guided-failure decision
# or approval, it removes the stepwise.dev/guided-failure-decision or
# stepwise.dev/approval annotation (a JSON patch that tests the value read)
# and records an approval as stepwise.dev/recorded-approval. The Deployment
# controller passes those annotations from a Deployment to its waiting Step
# and removes them from the Deployment the same way. Metadata only: specs
# are immutable.
- apiGroups: ["stepwise.dev"]
  resources: ["deployments", "steps"]
  verbs: ["patch"]
# Both controllers report phase, conditions and observedGeneration by
# server-side apply (a patch) of the status subresource; they never change
# a spec.
- apiGroups: ["stepwise.dev"]
  resources: ["deployments/status", "steps/status"]
  verbs: ["patch"]
# Steps and Jobs are created with an ownerReference that blocks its
# owner's deletion; where the OwnerReferencesPermissionEnforcement admission
# plugin is on (e.g. OpenShift) that needs update on the owner's finalizers.
# The operator sets no finalizers itself.
- apiGroups: ["stepwise.dev"]
  resources: ["deployments/finalizers", "steps/finalizers"]
  verbs: ["update"]
# The Step controller runs each action attempt as a Job, watches the Jobs
# it labelled to learn their outcome, and gets a Job that its cache does not
# hold yet before calling it lost (or to see who owns one under its name).
# It patches one annotation onto a failed attempt's Job: the decision that
# answered it (stepwise.dev/recorded-decision), so a status wipe cannot lose
# it. It never deletes a Job (they go with their Step through garbage
# collection).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Read only: the Step controller watches the pods of its Jobs to report why
# an attempt failed (exit code, reason) and when a failure was first seen.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Read only: before creating a Job the Step controller gets the Job's
# Namespace for its pod-security.kubernetes.io/enforce label, and sets
# runAsNonRoot on the pod only where it is "restricted" (elsewhere root
# images run). A Role in the watched namespace grants get on that namespace
# alone.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
# Both controllers publish Events (events.k8s.io/v1) about releases and
# steps; a repeated Event is patched to count its series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The Job controller's FailedCreate Events say why an attempt has no pod
# (admission, quota): listed by field selector while it has none.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
{{- end }}
