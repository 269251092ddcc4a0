#!/usr/bin/env bash
# Make sure the services the tests talk to are up. This machine kind starts PostgreSQL;
# if it has stopped, start it again. Later capabilities add Prometheus and Chromium here.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is still down: the integration tests need it at 127.0.0.1:5432" >&2; exit 1; }

# System packages the report tests need: poppler-utils (pdftoppm, pdftotext, pdfinfo, pdffonts),
# HarfBuzz subsetting for WeasyPrint's font embedding, DejaVu fonts named by the print CSS.
# Idempotent: apt-get runs (with one update) only when something is missing.
report_pkgs=(poppler-utils libharfbuzz-subset0 fonts-dejavu-core fontconfig)
missing=()
for pkg in "${report_pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing system packages for the report tests: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Prometheus and promtool (Debian's package) for the alert tests: installed when missing. The
# package's own service is not started (policy-rc.d); tests start their own server on 127.0.0.1.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian's prometheus package (promtool) for the alert tests" >&2
  dpkg -s prometheus >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
fi

# Browser tests (tests/browser): Debian's chromium, driven by Playwright through its
# executable_path (`playwright install` downloads a browser build, which cannot work here),
# and a font so pages render text. Idempotent like the block above.
dpkg -s chromium >/dev/null 2>&1 && dpkg -s fonts-dejavu-core >/dev/null 2>&1 || {
  echo "installing chromium for the browser tests" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core
}

# OAuth browser test (tests/browser/test_oauth.py): a real OpenID Connect server, the npm
# package oauth2-mock-server pinned in tests/browser/oauth/package-lock.json, installed there
# (not globally) when missing. Needs Node.js >= 20.19 and npm.
oauth_dir="$(dirname "$0")/../tests/browser/oauth"
if [ ! -d "$oauth_dir/node_modules/oauth2-mock-server" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is missing: the OAuth browser test needs Node.js >= 20.19" >&2; exit 1; }
  echo "installing the OAuth test server (npm ci in tests/browser/oauth)" >&2
  (cd "$oauth_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
