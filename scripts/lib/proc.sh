# shellcheck shell=bash
# Which recorded processes are alive and ours, for the scripts that start
# daemons next to the local cluster (cluster.sh, gitops.sh, demo.sh).
#
# A daemon is recorded as two files: PIDS/NAME.pid (its pid, read by the
# Rust tests and the bench too) and PIDS/NAME.start ("PID STARTTIME": its
# start time in clock ticks since boot, field 22 of /proc/PID/stat; it
# counts only while it names the pid in NAME.pid, so a pid file rewritten by
# someone else, as the outage test does, is judged by its command line). A
# pid with the same start time is the same process: exec keeps both, so the
# check holds from the fork on, before and after the program is exec'd,
# however slowly that happens. (The command line changes at exec, and judging by it made a
# not-yet-exec'd daemon look dead; see issue 11.) Only builtins read /proc:
# no pipelines, so no SIGPIPE under pipefail.
#
# The caller sets PIDS (the pid directory) and ROOT (the checkout).

# proc_stat PID: sets PROC_STATE (R, S, D, Z, ...) and PROC_START, or fails
# when there is no such process.
proc_stat() {
  local line rest
  PROC_STATE="" PROC_START=""
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  # The command name (field 2) is in parentheses and may hold spaces.
  rest="${line##*) }"
  local -a f
  read -r -a f <<<"$rest"
  PROC_STATE="${f[0]}"
  PROC_START="${f[19]}"
  [[ -n "$PROC_STATE" && -n "$PROC_START" ]]
}

# proc_alive PID: the process exists and has not exited (a zombie has).
proc_alive() {
  proc_stat "$1" && [[ "$PROC_STATE" != Z && "$PROC_STATE" != X ]]
}

# pid_record NAME PID: records a process just started (still in its fork or
# already exec'd: the start time is the same).
pid_record() {
  local name="$1" pid="$2"
  printf '%s\n' "$pid" >"$PIDS/$name.pid"
  if proc_stat "$pid"; then
    printf '%s %s\n' "$pid" "$PROC_START" >"$PIDS/$name.start"
  else
    rm -f "$PIDS/$name.start"
  fi
}

# pid_of NAME: prints the recorded pid, whatever became of the process.
pid_of() {
  local pid
  { read -r pid <"$PIDS/$1.pid"; } 2>/dev/null || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# live_pid NAME: prints the recorded pid if that process is alive and is the
# one recorded. A pid file with no start time of its own (written by a test
# that restarted a component) is judged by the command line instead, which
# must name this checkout.
live_pid() {
  local name="$1" pid start_pid start arg
  pid="$(pid_of "$name")" || return 1
  proc_alive "$pid" || return 1
  if { read -r start_pid start <"$PIDS/$name.start"; } 2>/dev/null && [[ "$start_pid" == "$pid" ]]; then
    [[ "$start" == "$PROC_START" ]] || return 1
  else
    local -a argv=()
    { mapfile -d '' argv <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    local found=1
    for arg in "${argv[@]}"; do
      [[ "$arg" == *"$ROOT/"* ]] && { found=0; break; }
    done
    ((found == 0)) || return 1
  fi
  printf '%s\n' "$pid"
}

# pid_forget NAME: drops the record.
pid_forget() { rm -f "$PIDS/$1.pid" "$PIDS/$1.start"; }

# shellcheck disable=SC2034 # HOW is read by the caller
# reap_status PID: sets HOW to how a process that is known to have exited
# ended. `wait` is only ever called on a process that is no longer alive
# (it would block until a live one exits); a pid that is not this shell's
# child answers 127 at once.
reap_status() {
  local pid="$1" rc=0
  if proc_alive "$pid"; then
    HOW="still running (pid $pid)"
    return 0
  fi
  { wait "$pid"; } 2>/dev/null || rc=$?
  if ((rc == 127)); then HOW="exit status unknown (pid $pid is not our child)"
  elif ((rc > 128)); then HOW="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))"
  else HOW="exit status $rc"; fi
}

# stop_pid NAME GRACE LOGFN: SIGTERM, up to GRACE seconds, then SIGKILL and
# up to 5 s more. Fails only if the process outlives SIGKILL.
stop_pid() {
  local name="$1" grace="$2" say="$3" pid i
  pid="$(live_pid "$name")" || { pid_forget "$name"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    live_pid "$name" >/dev/null || break
    sleep 0.1
  done
  if live_pid "$name" >/dev/null; then
    "$say" "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      live_pid "$name" >/dev/null || break
      sleep 0.1
    done
  fi
  live_pid "$name" >/dev/null && return 1
  pid_forget "$name"
}
