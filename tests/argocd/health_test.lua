-- Tests of the Argo CD health check charts/stepwise/argocd/health.lua.
--
--   lua5.4 tests/argocd/health_test.lua        (from any directory)
--
-- Runs the script the way Argo CD does: a fresh chunk per object, with the
-- object in the global `obj` and only the libraries Argo CD's Lua offers
-- (no io, no os), and checks the {status, message} it returns. Prints one
-- line per case and exits non-zero if any case fails.

local here = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local script = here .. "/../../charts/stepwise/argocd/health.lua"

-- Loads the script as a new chunk whose globals are `env`, under Lua 5.1
-- (what Argo CD embeds) as well as 5.2+.
local function load_with_env(path, env)
  if setfenv then
    local chunk, err = loadfile(path)
    if not chunk then
      return nil, err
    end
    return setfenv(chunk, env)
  end
  return loadfile(path, "t", env)
end

local function run_health(o)
  local env = {
    obj = o,
    ipairs = ipairs,
    pairs = pairs,
    next = next,
    type = type,
    tostring = tostring,
    tonumber = tonumber,
    select = select,
    error = error,
    pcall = pcall,
    string = string,
    table = table,
    math = math,
  }
  local chunk, err = load_with_env(script, env)
  if not chunk then
    error("cannot load " .. script .. ": " .. tostring(err))
  end
  return chunk()
end

-- A stepwise.dev Deployment at `generation` with the given status.
local function release(generation, status)
  return {
    apiVersion = "stepwise.dev/v1alpha1",
    kind = "Deployment",
    metadata = { name = "web-v42", namespace = "team-a", generation = generation },
    spec = { steps = { { name = "migrate", actions = { { name = "db", image = "migrate:1" } } } } },
    status = status,
  }
end

local function condition(type_, status, reason, message)
  return {
    type = type_,
    status = status,
    reason = reason,
    message = message,
    observedGeneration = 1,
    lastTransitionTime = "2026-01-01T00:00:00Z",
  }
end

local cases = {
  {
    name = "no status at all",
    obj = release(1, nil),
    status = "Progressing",
    message = "Waiting for the operator to report status",
  },
  {
    name = "status defaulted by the API server, operator not started (observedGeneration -1)",
    obj = release(1, { observedGeneration = -1 }),
    status = "Progressing",
    message = "Waiting for the operator to report status",
  },
  {
    name = "status without observedGeneration",
    obj = release(1, { phase = "Succeeded", message = "done" }),
    status = "Progressing",
    message = "Waiting for the operator to report status",
  },
  {
    name = "stale status: observedGeneration behind generation, even if Succeeded",
    obj = release(3, { observedGeneration = 2, phase = "Succeeded", message = "All 2 steps succeeded" }),
    status = "Progressing",
    message = "Waiting for the operator to observe generation 3 (it reported 2)",
  },
  {
    name = "Pending",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Pending",
      message = "Waiting to start step migrate",
      conditions = { condition("Reconciling", "True", "Pending", "Waiting to start step migrate") },
    }),
    status = "Progressing",
    message = "Waiting to start step migrate",
  },
  {
    name = "Running",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Running",
      currentStep = "migrate",
      message = "Step migrate: action db running (attempt 1)",
      conditions = {
        condition("Ready", "False", "Running", "in progress"),
        condition("Reconciling", "True", "Running", "in progress"),
        condition("Stalled", "False", "Running", ""),
      },
    }),
    status = "Progressing",
    message = "Step migrate: action db running (attempt 1)",
  },
  {
    name = "Queued",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Queued",
      message = "queued: waits for release shop-1 to finish (place 1 in the queue for concurrency key shop)",
    }),
    status = "Progressing",
    message = "queued: waits for release shop-1 to finish (place 1 in the queue for concurrency key shop)",
  },
  {
    name = "Queued without a message",
    obj = release(1, { observedGeneration = 1, phase = "Queued" }),
    status = "Progressing",
    message = "Queued behind another release with the same concurrency key",
  },
  {
    name = "Retrying",
    obj = release(1, { observedGeneration = 1, phase = "Retrying", message = "Action db failed; attempt 2 in 10s" }),
    status = "Progressing",
    message = "Action db failed; attempt 2 in 10s",
  },
  {
    name = "Succeeded",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Succeeded",
      message = "All 1 steps succeeded",
      conditions = { condition("Ready", "True", "Succeeded", "All 1 steps succeeded") },
    }),
    status = "Healthy",
    message = "All 1 steps succeeded",
  },
  {
    name = "Failed",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Failed",
      message = "Action db failed after 3 attempts: exit code 1",
      conditions = { condition("Stalled", "True", "Failed", "Action db failed after 3 attempts: exit code 1") },
    }),
    status = "Degraded",
    message = "Action db failed after 3 attempts: exit code 1",
  },
  {
    name = "WaitingForDecision is Degraded (a failure needs a person)",
    obj = release(1, {
      observedGeneration = 1,
      phase = "WaitingForDecision",
      message = "Action db failed; decide with stepwise.dev/guided-failure-decision=retry|ignore|abort",
      conditions = { condition("GuidedFailure", "True", "WaitingForDecision", "") },
    }),
    status = "Degraded",
    message = "Action db failed; decide with stepwise.dev/guided-failure-decision=retry|ignore|abort",
  },
  {
    name = "WaitingForApproval is Suspended (waits for a person, nothing failed)",
    obj = release(1, { observedGeneration = 1, phase = "WaitingForApproval", message = "Step deploy waits for approval" }),
    status = "Suspended",
    message = "Step deploy waits for approval",
  },
  {
    name = "a phase without a message gets a default message",
    obj = release(1, { observedGeneration = 1, phase = "WaitingForApproval" }),
    status = "Suspended",
    message = "Waiting for approval (annotate the Step with stepwise.dev/approval)",
  },
  {
    name = "an empty message counts as none",
    obj = release(1, { observedGeneration = 1, phase = "Succeeded", message = "" }),
    status = "Healthy",
    message = "Succeeded",
  },
  {
    name = "no phase: conditions decide (Stalled=True)",
    obj = release(1, {
      observedGeneration = 1,
      conditions = { condition("Stalled", "True", "StepRejected", "the Step was rejected") },
    }),
    status = "Degraded",
    message = "the Step was rejected",
  },
  {
    name = "no phase: conditions decide (Ready=True)",
    obj = release(1, { observedGeneration = 1, conditions = { condition("Ready", "True", "Succeeded", "done") } }),
    status = "Healthy",
    message = "done",
  },
  {
    name = "no phase and no decisive condition",
    obj = release(1, { observedGeneration = 1 }),
    status = "Progressing",
    message = "Waiting for the operator to report a phase",
  },
  {
    name = "a phase from a newer operator falls back to conditions",
    obj = release(1, {
      observedGeneration = 1,
      phase = "Paused",
      conditions = { condition("Reconciling", "True", "Paused", "paused by a person") },
    }),
    status = "Progressing",
    message = "paused by a person",
  },
  {
    name = "an unknown phase with no decisive condition is Unknown",
    obj = release(1, { observedGeneration = 1, phase = "Paused" }),
    status = "Unknown",
    message = "Unknown phase Paused",
  },
  {
    name = "generation as a float, as Argo CD's Lua sees JSON numbers",
    obj = release(2.0, { observedGeneration = 2.0, phase = "Running", message = "running" }),
    status = "Progressing",
    message = "running",
  },
  {
    name = "a Step (same phases) that succeeded",
    obj = {
      apiVersion = "stepwise.dev/v1alpha1",
      kind = "Step",
      metadata = { name = "web-v42-migrate", namespace = "team-a", generation = 1 },
      status = { observedGeneration = 1, phase = "Succeeded", message = "All actions succeeded" },
    },
    status = "Healthy",
    message = "All actions succeeded",
  },
}

local passed, failed = 0, 0
for _, c in ipairs(cases) do
  local ok, hs = pcall(run_health, c.obj)
  local problem = nil
  if not ok then
    problem = "error: " .. tostring(hs)
  elseif type(hs) ~= "table" then
    problem = "returned " .. type(hs) .. ", not a table"
  elseif hs.status ~= c.status then
    problem = string.format("status %q, want %q", tostring(hs.status), c.status)
  elseif hs.message ~= c.message then
    problem = string.format("message %q, want %q", tostring(hs.message), c.message)
  end
  if problem then
    failed = failed + 1
    print("FAIL " .. c.name .. ": " .. problem)
  else
    passed = passed + 1
    print("ok   " .. c.name)
  end
end

print(string.format("argocd health: %d passed, %d failed", passed, failed))
if failed > 0 then
  os.exit(1)
end
