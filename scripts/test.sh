#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (root, Python 3.11),
# then runs it. Extra arguments go to pytest: scripts/test.sh -k http -x
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(prometheus prometheus-alertmanager prometheus-blackbox-exporter postgresql gettext-base chromium busybox
                 docker-compose nodejs)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  # Tests start these services themselves on 127.0.0.1; keep the packages' init scripts from
  # starting system-wide daemons during installation.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# npm: Debian's nodejs ships without it (a NodeSource nodejs carries its own and conflicts with the package)
command -v npm >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends npm >/dev/null; }

# The real JavaScript SDKs the tests drive (@sentry/node, @sentry/browser, posthog-node, posthog-js,
# puppeteer-core, esbuild), pinned
# by tests/js/package-lock.json; `npm ci` again only when the lock changed. No browser is downloaded:
# puppeteer-core drives Debian's chromium, and no install script runs.
if ! cmp -s tests/js/package-lock.json tests/js/node_modules/.installed-lock.json; then
  (cd tests/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp tests/js/package-lock.json tests/js/node_modules/.installed-lock.json
fi

# The rrweb player of the agent's replay page (GET /replay/{sessionId}), pinned by agent/replay/package-lock.json
# and served from agent/replay/node_modules: installed, never copied into the repository.
if ! cmp -s agent/replay/package-lock.json agent/replay/node_modules/.installed-lock.json; then
  npm ci --prefix agent/replay --ignore-scripts --no-audit --no-fund --loglevel=error
  cp agent/replay/package-lock.json agent/replay/node_modules/.installed-lock.json
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
# One pytest worker per core (pytest-xdist), each test module on one worker (its module-scoped agent
# or Prometheus starts once): most tests wait on processes and sockets, so the suite takes about
# 4.5 minutes on two cores instead of 8. Pass -n 0 to run in one process (e.g. with --pdb).
exec python3 -m pytest -n auto --dist loadscope "$@"
