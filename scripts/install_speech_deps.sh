#!/usr/bin/env bash
# Install the speech-synthesis tools used by ipem.synth on Debian 12.
#
#   * espeak-ng, sox, mbrola (Debian "main"/"contrib")
#   * MBROLA diphone voices that espeak-ng can drive as English speakers
#     (mb-us1..3, mb-en1 and the mb-XX-en voices); these are in "non-free".
#
# Idempotent: it adds the contrib and non-free components to the apt sources
# only if missing, and does nothing at all when everything is installed.
# Must be run as root on Debian (bookworm).  Usage:
#
#   sudo bash scripts/install_speech_deps.sh
#
set -euo pipefail

BASE_PKGS=(espeak-ng sox mbrola)
# MBROLA databases that espeak-ng exposes as English voices:
#   mb-us1 mb-us2 mb-us3 mb-en1 (native English) and mb-<X>-en for the others.
CORE_VOICES=(us1 us2 us3 en1)
EXTRA_VOICES=(af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2)
ALL_VOICES=("${CORE_VOICES[@]}" "${EXTRA_VOICES[@]}")

log() { printf '[install_speech_deps] %s\n' "$*"; }

manual_instructions() {
    local pkgs="${BASE_PKGS[*]}"
    local v
    for v in "${ALL_VOICES[@]}"; do pkgs+=" mbrola-$v"; done
    cat >&2 <<EOF
This script must run as root on Debian 12 (bookworm). To install by hand:

  # 1. enable the contrib and non-free components, e.g. in
  #    /etc/apt/sources.list.d/debian.sources change
  #        Components: main
  #    to  Components: main contrib non-free
  #    (or append "contrib non-free" to each 'deb' line of /etc/apt/sources.list)
  sudo apt-get update
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      $pkgs
EOF
}

if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: not running as root." >&2
    manual_instructions
    exit 1
fi
if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: this does not look like a Debian system (no /etc/debian_version or apt-get)." >&2
    manual_instructions
    exit 1
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

# Is the package known to apt (with a candidate version)?
is_available() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]]
}

# ---------------------------------------------------------------------------
# 1. apt components
# ---------------------------------------------------------------------------
SOURCES_CHANGED=0

fix_deb822() {
    # Add contrib/non-free to every "Components:" line of a deb822 file that
    # belongs to a Debian archive stanza (URIs containing debian).
    local f="$1"
    local tmp
    tmp="$(mktemp "${f}.XXXXXX")"
    awk '
        function flush() {
            for (i = 1; i <= n; i++) {
                line = buf[i]
                if (is_debian && line ~ /^Components:/) {
                    if (line !~ /[[:space:]]contrib([[:space:]]|$)/)  line = line " contrib"
                    if (line !~ /[[:space:]]non-free([[:space:]]|$)/) line = line " non-free"
                }
                print line
            }
            n = 0; is_debian = 0
        }
        /^[[:space:]]*$/ { flush(); print; next }
        {
            buf[++n] = $0
            if ($0 ~ /^URIs:/ && $0 ~ /debian/) is_debian = 1
        }
        END { flush() }
    ' "$f" >"$tmp"
    if cmp -s "$f" "$tmp"; then
        rm -f "$tmp"
    else
        chmod --reference="$f" "$tmp"
        cp -p "$f" "/var/backups/$(basename "$f").bak-speechdeps" 2>/dev/null || true
        mv "$tmp" "$f"
        SOURCES_CHANGED=1
        log "added contrib/non-free to $f"
    fi
}

fix_classic() {
    # Append contrib/non-free to each active 'deb'/'deb-src' line pointing at
    # a Debian archive.
    local f="$1"
    local tmp
    tmp="$(mktemp "${f}.XXXXXX")"
    awk '
        /^[[:space:]]*deb(-src)?[[:space:]]/ && /debian/ {
            line = $0
            if (line !~ /[[:space:]]contrib([[:space:]]|$)/)  line = line " contrib"
            if (line !~ /[[:space:]]non-free([[:space:]]|$)/) line = line " non-free"
            print line; next
        }
        { print }
    ' "$f" >"$tmp"
    if cmp -s "$f" "$tmp"; then
        rm -f "$tmp"
    else
        chmod --reference="$f" "$tmp"
        cp -p "$f" "/var/backups/$(basename "$f").bak-speechdeps" 2>/dev/null || true
        mv "$tmp" "$f"
        SOURCES_CHANGED=1
        log "added contrib/non-free to $f"
    fi
}

ensure_components() {
    local found=0 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        if grep -q '^URIs:.*debian' "$f"; then
            fix_deb822 "$f"
            found=1
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        if grep -Eq '^[[:space:]]*deb(-src)?[[:space:]].*debian' "$f"; then
            fix_classic "$f"
            found=1
        fi
    done
    if [[ "$found" -eq 0 ]]; then
        echo "error: found no Debian archive entry in /etc/apt/sources.list or" \
             "/etc/apt/sources.list.d/*.sources; add one with 'main contrib non-free'." >&2
        exit 1
    fi
}

ensure_components

# ---------------------------------------------------------------------------
# 2. Already done?
# ---------------------------------------------------------------------------
all_done() {
    local p v
    for p in "${BASE_PKGS[@]}"; do is_installed "$p" || return 1; done
    for v in "${CORE_VOICES[@]}"; do is_installed "mbrola-$v" || return 1; done
    for v in "${EXTRA_VOICES[@]}"; do
        # a voice missing from the archive does not count as "not done"
        if ! is_installed "mbrola-$v" && is_available "mbrola-$v"; then return 1; fi
    done
    return 0
}

if [[ "$SOURCES_CHANGED" -eq 0 ]] && all_done; then
    log "espeak-ng, sox, mbrola and the MBROLA voices are already installed; nothing to do."
    exit 0
fi

# ---------------------------------------------------------------------------
# 3. Install
# ---------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -qq

TO_INSTALL=()
for p in "${BASE_PKGS[@]}"; do
    is_installed "$p" || TO_INSTALL+=("$p")
done
MISSING=()
for v in "${ALL_VOICES[@]}"; do
    p="mbrola-$v"
    if is_installed "$p"; then continue; fi
    if is_available "$p"; then TO_INSTALL+=("$p"); else MISSING+=("$p"); fi
done
if [[ "${#MISSING[@]}" -gt 0 ]]; then
    log "not in the archive (skipped): ${MISSING[*]}"
fi

if [[ "${#TO_INSTALL[@]}" -gt 0 ]]; then
    log "installing: ${TO_INSTALL[*]}"
    apt-get install -y -qq --no-install-recommends "${TO_INSTALL[@]}"
fi

# ---------------------------------------------------------------------------
# 4. Check
# ---------------------------------------------------------------------------
for p in "${BASE_PKGS[@]}"; do
    is_installed "$p" || { echo "error: $p failed to install" >&2; exit 1; }
done
n_ok=0
for v in "${ALL_VOICES[@]}"; do
    [[ -f "/usr/share/mbrola/$v/$v" ]] && n_ok=$((n_ok + 1))
done
check_wav="$(mktemp --suffix=.wav)"
trap 'rm -f "$check_wav"' EXIT
if ! espeak-ng -v mb-us1 -w "$check_wav" "installation check" 2>/dev/null \
        || [[ ! -s "$check_wav" ]]; then
    echo "error: espeak-ng could not synthesise with the MBROLA voice mb-us1" >&2
    exit 1
fi
log "done: $n_ok MBROLA voices installed; espeak-ng + mb-us1 synthesis works."
