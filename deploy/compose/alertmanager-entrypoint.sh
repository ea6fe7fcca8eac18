#!/bin/sh
# Entrypoint of the compose stack's Alertmanager (prom/alertmanager, a busybox image without envsubst).
#
# prometheus/alertmanager.yml commits no URL: Slack's is read by Alertmanager from
# /etc/alertmanager/secrets/SLACK_WEBHOOK_URL, and the two webhook URLs are the placeholders
# ${ALERT_EMAIL_WEBHOOK} and ${ALERT_WEBHOOK_URL} (Alertmanager 0.25 webhooks have no url_file).
# This script does what that file's header prescribes with envsubst, in sh and awk: each
# placeholder becomes the text of the secret file of the same name (trailing newlines dropped, as
# $(cat FILE) does), in one pass, nothing else in the file touched, and the result is written to a
# tmpfs (/run/alertmanager) so the URLs never reach a disk. tests/test_stack_static.py checks the
# output is byte for byte what envsubst writes.
#
# The paths are variables only so the test can run this script outside the container.
set -eu

secrets_dir="${LOOM_AM_SECRETS_DIR:-/etc/alertmanager/secrets}"
config_in="${LOOM_AM_CONFIG_IN:-/etc/alertmanager/alertmanager.yml}"
config_out="${LOOM_AM_CONFIG_OUT:-/run/alertmanager/alertmanager.yml}"
alertmanager="${LOOM_AM_BIN:-/bin/alertmanager}"

fail() {
    echo "alertmanager-entrypoint: $*" >&2
    exit 1
}

# every secret must be there at start: a missing one would only show when an alert is sent
for name in SLACK_WEBHOOK_URL ALERT_EMAIL_WEBHOOK ALERT_WEBHOOK_URL; do
    [ -r "$secrets_dir/$name" ] || fail "$secrets_dir/$name: missing or unreadable secret file"
done
[ -r "$config_in" ] || fail "$config_in: missing or unreadable"

ALERT_EMAIL_WEBHOOK="$(cat "$secrets_dir/ALERT_EMAIL_WEBHOOK")"
ALERT_WEBHOOK_URL="$(cat "$secrets_dir/ALERT_WEBHOOK_URL")"
export ALERT_EMAIL_WEBHOOK ALERT_WEBHOOK_URL

umask 077
mkdir -p "$(dirname "$config_out")"
# ENVIRON hands awk the values as they are (no escape processing, unlike -v), and index/substr
# match literally, so '&', '\', '|' or '$' in a URL come out unchanged
awk '
BEGIN { names[1] = "ALERT_EMAIL_WEBHOOK"; names[2] = "ALERT_WEBHOOK_URL" }
{
    rest = $0; out = ""
    while ((at = index(rest, "${")) > 0) {
        out = out substr(rest, 1, at - 1); rest = substr(rest, at)
        replaced = 0
        for (n = 1; n <= 2; n++) {
            token = "${" names[n] "}"
            if (substr(rest, 1, length(token)) == token) {
                out = out ENVIRON[names[n]]; rest = substr(rest, length(token) + 1); replaced = 1
                break
            }
        }
        if (!replaced) { out = out "${"; rest = substr(rest, 3) }
    }
    print out rest
}' "$config_in" > "$config_out"

exec "$alertmanager" --config.file="$config_out" "$@"
