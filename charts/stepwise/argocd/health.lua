-- Argo CD health check for stepwise.dev Deployments (and Steps, which report
-- the same phases). Argo CD runs it with the live object in `obj` and reads
-- back {status, message}. Install it with argocd-cm-patch.yaml beside this
-- file (generated from it by scripts/gen-deploy.sh), under the keys
-- resource.customizations.health.stepwise.dev_Deployment and
-- resource.customizations.health.stepwise.dev_Step.
--
-- Mapping (status.phase -> Argo CD health):
--   no status, or status.observedGeneration != metadata.generation
--                        -> Progressing (the operator has not caught up yet)
--   Pending, Queued, Running, Retrying
--                        -> Progressing (Queued: a Deployment waits for
--                           another release with its concurrency key)
--   Succeeded            -> Healthy
--   Failed               -> Degraded
--   WaitingForDecision   -> Degraded: an action failed under guided failure
--                           and the release waits for a person to decide
--                           (retry, ignore or abort) - something is wrong.
--   WaitingForApproval   -> Suspended: nothing failed; the release waits for
--                           a person's approval before it goes on.
--   no or unknown phase  -> from the kstatus conditions: Stalled=True ->
--                           Degraded, Ready=True -> Healthy, else Progressing
--                           (Unknown for a phase this script does not know).
-- The message is status.message when the operator wrote one.
--
-- Written for Argo CD's Lua 5.1 (gopher-lua): base, string and table only.

local hs = {}

local PHASES = {
  Pending = "Progressing",
  Queued = "Progressing",
  Running = "Progressing",
  Retrying = "Progressing",
  Succeeded = "Healthy",
  Failed = "Degraded",
  WaitingForDecision = "Degraded",
  WaitingForApproval = "Suspended",
}

local DEFAULT_MESSAGES = {
  Pending = "Pending",
  Queued = "Queued behind another release with the same concurrency key",
  Running = "Running",
  Retrying = "Retrying a failed action",
  Succeeded = "Succeeded",
  Failed = "Failed",
  WaitingForDecision = "Waiting for a decision on a failed action (annotate the Step with stepwise.dev/guided-failure-decision)",
  WaitingForApproval = "Waiting for approval (annotate the Step with stepwise.dev/approval)",
}

local function nonEmpty(s)
  return type(s) == "string" and s ~= ""
end

-- The first of its arguments that is a non-empty string.
local function firstMessage(a, b, c)
  if nonEmpty(a) then
    return a
  end
  if nonEmpty(b) then
    return b
  end
  return c
end

local function conditionIsTrue(status, conditionType)
  if type(status.conditions) ~= "table" then
    return false
  end
  for _, c in ipairs(status.conditions) do
    if c.type == conditionType and c.status == "True" then
      return true
    end
  end
  return false
end

local function conditionMessage(status, conditionType)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == conditionType and nonEmpty(c.message) then
      return c.message
    end
  end
  return nil
end

local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local observed = status.observedGeneration
if observed == nil or observed < 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to observe generation %d (it reported %d)", generation, observed)
  return hs
end

local phase = status.phase
local health = nil
if phase ~= nil then
  health = PHASES[phase]
end

if health ~= nil then
  hs.status = health
  hs.message = firstMessage(status.message, nil, DEFAULT_MESSAGES[phase])
  return hs
end

-- No phase, or one this script does not know: fall back to kstatus conditions.
if conditionIsTrue(status, "Stalled") then
  hs.status = "Degraded"
  hs.message = firstMessage(status.message, conditionMessage(status, "Stalled"), "Stalled")
elseif conditionIsTrue(status, "Ready") then
  hs.status = "Healthy"
  hs.message = firstMessage(status.message, conditionMessage(status, "Ready"), "Ready")
elseif phase == nil or conditionIsTrue(status, "Reconciling") then
  hs.status = "Progressing"
  hs.message = firstMessage(status.message, conditionMessage(status, "Reconciling"), "Waiting for the operator to report a phase")
else
  hs.status = "Unknown"
  hs.message = firstMessage(status.message, nil, "Unknown phase " .. tostring(phase))
end
return hs
