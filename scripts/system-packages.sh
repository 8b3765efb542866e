#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when they are missing:
# `apt-get update` once, then only what is missing. `make demo` and
# `make test` call it, so a fresh machine needs nothing done by hand.
#
#   scripts/system-packages.sh demo   what the cluster and the demo use
#   scripts/system-packages.sh test   that, plus what the test suites use
set -euo pipefail

demo=(curl openssl python3 gcc make git)
test=("${demo[@]}" jq lua5.4 python3-venv)

case "${1:-}" in
  demo) want=("${demo[@]}") ;;
  test) want=("${test[@]}") ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
  # `dpkg-query` answers from the local database: no network, no lock.
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" ]] || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

say() { printf '[packages] %s\n' "$*" >&2; }
command -v apt-get >/dev/null || { say "error: missing ${missing[*]} and no apt-get here; install them by hand"; exit 1; }
sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { say "error: missing ${missing[*]}; run as root: apt-get install ${missing[*]}"; exit 1; }
  sudo=(sudo)
fi
say "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# Bounded: a mirror that does not answer fails the target instead of hanging it.
apt_opts=(-o Acquire::http::Timeout=30 -o Acquire::Retries=2 -o DPkg::Lock::Timeout=120)
timeout 600 "${sudo[@]}" apt-get "${apt_opts[@]}" update -qq ||
  { say "error: apt-get update failed or took over 10 minutes"; exit 1; }
timeout 900 "${sudo[@]}" apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" ||
  { say "error: apt-get install ${missing[*]} failed or took over 15 minutes"; exit 1; }
