#!/usr/bin/env bash
# Installs a built amd64 package on this machine and checks it as an installer would, then
# removes and purges it: files, user, unit (systemd's own verifier and security score),
# check-config on the shipped configuration, the installer's commands (check-config, report,
# export, verify, backup) run by a non-root member of group cems-gateway on the buffer the
# service writes, data kept on remove and gone on purge.
# Must run as root on a machine where the package is not installed for real.
set -euo pipefail
deb=${1:?usage: packaging/check-deb.sh target/debian/cems-gateway_VERSION_amd64.deb}
fail() { echo "check-deb: $*" >&2; exit 1; }

out=$(dpkg -i "$deb" 2>&1) || { echo "$out"; fail "dpkg -i"; }
echo "$out"
# adduser warns when the home directory it is given does not exist yet.
! grep -qi "home dir" <<<"$out" || fail "adduser warned about the home directory"
[ "$(dpkg-query -W -f '${Status}' cems-gateway)" = "install ok installed" ] || fail "not installed"
for f in /usr/bin/cems-gateway /usr/lib/systemd/system/cems-gateway.service /etc/cems-gateway/cems-gateway.toml \
         /usr/share/doc/cems-gateway/INSTALL.md /usr/share/doc/cems-gateway/examples/coke-oven-chimney.toml; do
    [ -e "$f" ] || fail "missing $f"
done
dpkg-query -W -f '${Conffiles}' cems-gateway | grep -q /etc/cems-gateway/cems-gateway.toml || fail "config is not a conffile"
getent passwd cems-gateway >/dev/null || fail "no user cems-gateway"
id -nG cems-gateway | tr ' ' '\n' | grep -qx dialout || fail "cems-gateway is not in dialout"
[ "$(stat -c '%U:%a' /var/lib/cems-gateway)" = "cems-gateway:750" ] || fail "state directory owner/mode"
[ "$(stat -c '%G:%a' /etc/cems-gateway/cems-gateway.toml)" = "cems-gateway:640" ] || fail "config group/mode"
[ -L /etc/systemd/system/multi-user.target.wants/cems-gateway.service ] || fail "unit not enabled"
# Only the installed binary counts (a developer's gateway or a benchmark may be running too).
! pgrep -f '^/usr/bin/cems-gateway( |$)' >/dev/null || fail "started on a fresh install"

# The shipped config is valid, read as the service user reads it.
su -s /bin/sh -c '/usr/bin/cems-gateway check-config /etc/cems-gateway/cems-gateway.toml' cems-gateway \
    || fail "check-config on the shipped config"

# The installer's commands, as the install guide gives them, run by a non-root member of group
# cems-gateway (`sudo adduser $USER cems-gateway`) on the buffer the service writes.
installer=cems-check-installer
adduser --disabled-password --gecos "" --quiet "$installer"
adduser --quiet "$installer" cems-gateway
as_installer() { runuser -u "$installer" -- "$@"; }
# The buffer as the service writes it: the daemon as its user with the unit's umask, for a few
# seconds (the shipped configuration's analyzers are not here: their samples are flagged B).
grep -qx 'UMask=0027' /usr/lib/systemd/system/cems-gateway.service || fail "the unit's umask is not 0027"
cfg=/etc/cems-gateway/cems-gateway.toml
(umask 0027; exec runuser -u cems-gateway -- /usr/bin/cems-gateway run --config "$cfg") 2>/dev/null &
daemon=$!
for _ in $(seq 50); do [ -e /var/lib/cems-gateway/cems.db ] && break; sleep 0.2; done
sleep 3
kill -TERM "$daemon"
wait "$daemon" || true
[ "$(stat -c '%G:%a' /var/lib/cems-gateway/cems.db)" = "cems-gateway:640" ] || fail "buffer group/mode"
month=$(date +%Y-%m)
today=$(date +%F)
as_installer cems-gateway check-config "$cfg" || fail "check-config as a member of cems-gateway"
as_installer cems-gateway report --config "$cfg" --month "$month" >/dev/null \
    || fail "report as a member of cems-gateway"
as_installer cems-gateway export --config "$cfg" --from "$today" --to "$today" --level hour \
    | head -n 1 | grep -q '^time,outlet,level,' || fail "export as a member of cems-gateway"
as_installer cems-gateway verify --config "$cfg" | grep -q 'audit chain intact' \
    || fail "verify as a member of cems-gateway"
as_installer cems-gateway backup --config "$cfg" "/home/$installer/cems-backup.db" | grep -q 'copy intact' \
    || fail "backup as a member of cems-gateway"
as_installer cems-gateway verify --db "/home/$installer/cems-backup.db" >/dev/null \
    || fail "verify --db of the backup"
deluser --remove-home --quiet "$installer" >/dev/null 2>&1 || true
echo "check-deb: check-config, report, export, verify and backup work for a member of cems-gateway"

# systemd's verifier exits 0 even on parse errors: any output is a failure.
out=$(systemd-analyze verify /usr/lib/systemd/system/cems-gateway.service 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify: $out"
score=$(systemd-analyze security --offline=true /usr/lib/systemd/system/cems-gateway.service 2>&1 \
    | sed -n 's/.*Overall exposure level for cems-gateway.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no security score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score > 2.0"
echo "systemd-analyze security: exposure $score"

# An upgrade (here: the same package again) keeps an edited config and the data.
touch /var/lib/cems-gateway/cems.db
sed -i 's/^name = "Example Cement Co., line 2"/name = "Edited by the installer"/' /etc/cems-gateway/cems-gateway.toml
dpkg -i --force-confold "$deb"
grep -q 'Edited by the installer' /etc/cems-gateway/cems-gateway.toml || fail "upgrade replaced the edited config"
[ -e /var/lib/cems-gateway/cems.db ] || fail "upgrade deleted the data"

# Remove keeps data and config; purge removes them and the user.
dpkg -r cems-gateway
[ -e /var/lib/cems-gateway/cems.db ] || fail "remove deleted the data"
[ -e /etc/cems-gateway/cems-gateway.toml ] || fail "remove deleted the config"
dpkg -P cems-gateway
[ ! -e /var/lib/cems-gateway ] || fail "purge kept the data"
[ ! -e /etc/cems-gateway/cems-gateway.toml ] || fail "purge kept the config"
! getent passwd cems-gateway >/dev/null || fail "purge kept the user"
echo "check-deb: $deb OK"
