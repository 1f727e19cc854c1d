#!/usr/bin/env bash
# @HEADER@ (egress-tui replaces this line: what it was generated for, and the allowlist)
#
# @USAGE_COMMENT@
#
# How it works, and what it fixes in the devcontainer's init-firewall.sh it replaces:
# - its own chain (EGRESS-TUI), hooked into OUTPUT with one jump, and its own ipset sets.
#   It never flushes a table or touches another chain: the original flushed them all,
#   Docker's embedded-DNS NAT rules (nat table, DOCKER_OUTPUT) included.
# - every host name is resolved when the script runs, for IPv4 and IPv6 (getent ahostsv4 /
#   ahostsv6); a name that does not resolve is reported and skipped, never fatal (the
#   original aborted half-way and left the container open).
# - IPv6 is filtered like IPv4 (the original left it open).
# - DNS only to the resolvers listed below (the original allowed port 53 to anywhere).
# - all or nothing: the sets are filled under "-new" names and swapped in, each family's
#   rules load in one iptables-restore transaction, and on any error the saved rules and the
#   previous sets are put back, so the container keeps exactly what it had.

set -euo pipefail
set -E                                    # the ERR trap fires inside functions as well
shopt -s inherit_errexit 2>/dev/null || true

PROG=${0##*/}
readonly PROG
readonly CHAIN=@CHAIN@
readonly SET4=@SET4@ SET4P=@SET4P@ SET6=@SET6@ SET6P=@SET6P@
readonly NEW=@NEW@ SYNC_SET=@SYNC@ PREFIX=@PREFIX@
readonly LIVE_SETS=("$SET4" "$SET4P" "$SET6" "$SET6P")

# The allowlist, one entry per index: kind (name: resolved here; net: an address or a
# network, used as is), pattern, port ("" for any), set entry comment.
ENTRY_KIND=(@KINDS@)
ENTRY_PAT=(@PATS@)
ENTRY_PORT=(@PORTS@)
ENTRY_WHY=(@WHYS@)
# Wildcards cannot be resolved by a script (see the top of this file): warned about, not allowed.
WILDCARDS=(@WILDCARDS@)
# A "name:port" entry allows these protocols to the port (udp too: QUIC).
PORT_PROTOS=(@PROTOS@)
# DNS servers to allow. Empty: the nameserver lines of /etc/resolv.conf at run time.
#
# Docker's embedded resolver (nameserver 127.0.0.11) needs no rule of its own: it listens on
# loopback, which is allowed, and its NAT rules are left alone. But it forwards each query
# to its upstream servers (--dns, or the host's) FROM INSIDE THIS CONTAINER's network
# namespace (dockerd opens the forwarding socket in here), so those upstream queries go
# through this OUTPUT chain as well and must be allowed, or every name times out. The
# upstream servers do not appear in /etc/resolv.conf: egress-tui fills them in below when it
# generates this script; otherwise pass them with --resolver ADDR.
BAKED_RESOLVERS=(@RESOLVERS@)
# The check after applying: a connection here must fail ("" to skip).
DENY_CHECK_NAME=@DENY_CHECK@
# 1: proxy-only mode, the entries are the proxies: each must resolve, and not to a loopback
# address (a proxy inside the container cannot be told apart by this firewall), or nothing
# is applied; with no proxy reachable nothing could get out at all.
PROXY_ONLY=@PROXY_ONLY@

# -- output ---------------------------------------------------------------------------

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

with_timeout() {  # SECONDS CMD...: CMD with a time limit when coreutils timeout exists
  local t=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout "$t" "$@"; else "$@"; fi
}

is_ip() {
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] && return 0
  [[ "$1" == *:* && "$1" =~ ^[0-9A-Fa-f:.]+$ ]]
}

# -- the firewall's text: generated from egress-tui's own rules (tui/firewall/plan.py Plan) --

# >>> @RULES_FN@: egress-tui puts rules() here, cut out of its own Plan when it renders this
rules() {  # $1: 4 or 6; $2: 1 when OUTPUT already jumps to the chain
  return 1
}
# <<<

# >>> @SET_FN@: egress-tui puts set_input() here, cut out of its own Plan when it renders this
set_input() {
  return 1
}
# <<<

# -- checks ---------------------------------------------------------------------------

need_tools() {
  local t missing=()
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then
    die "missing: ${missing[*]} (Debian/Ubuntu: apt-get install iptables ipset; getent is in libc-bin)"
  fi
}

need_root() {
  [ "${EUID:-$(id -u)}" = 0 ] || die "run as root (in a container started with --cap-add=NET_ADMIN)"
  need_tools iptables ip6tables iptables-save iptables-restore ip6tables-save ip6tables-restore ipset "$@"
  iptables-save -t filter >/dev/null 2>&1 ||
    die "cannot read the IPv4 rules (iptables-save failed): does the container have NET_ADMIN (docker run --cap-add=NET_ADMIN)?"
  ip6tables-save -t filter >/dev/null 2>&1 ||
    die "cannot read the IPv6 rules (ip6tables-save failed): is IPv6 disabled in the kernel?"
  ipset list -n >/dev/null 2>&1 ||
    die "ipset does not work here (ipset list failed): NET_ADMIN missing, or no ip_set kernel module on the host"
}

take_lock() {  # one run at a time per network namespace
  local ns dir=/run
  if ! command -v flock >/dev/null 2>&1; then
    warn "flock not found: not guarding against a second run at the same time"
    return 0
  fi
  ns=$(readlink /proc/self/ns/net 2>/dev/null || true)
  ns=${ns//[!0-9]/}
  if ! [ -d "$dir" ] || ! [ -w "$dir" ]; then dir=${TMPDIR:-/tmp}; fi
  LOCK_FILE="$dir/egress-tui-firewall.${ns:-0}.lock"
  exec 9>>"$LOCK_FILE"
  flock -n 9 || die "another $PROG is running in this network namespace (lock $LOCK_FILE); not running twice"
}

count_hooks() {  # iptables-save text -> how many OUTPUT rules jump to the chain
  local line n=0 re="^(\\[[0-9]+:[0-9]+\\] )?-A OUTPUT -j ${CHAIN}\$"
  while IFS= read -r line; do
    if [[ "$line" =~ $re ]]; then n=$((n + 1)); fi
  done <<<"$1"
  printf '%s\n' "$n"
}

has_chain() { [[ $'\n'"$1"$'\n' == *$'\n'":$CHAIN "* ]]; }

# -- resolvers ----------------------------------------------------------------------------

RESOLVERS=()
EXTRA_RESOLVERS=()

add_resolver() {
  local r=${1%%\%*} x
  is_ip "$r" || { warn "ignoring resolver '$1': not an IP address"; return 0; }
  for x in "${RESOLVERS[@]}"; do [ "$x" = "$r" ] && return 0; done
  RESOLVERS+=("$r")
}

load_resolvers() {
  local key val rest r s words
  if ((${#BAKED_RESOLVERS[@]})); then
    for r in "${BAKED_RESOLVERS[@]}"; do add_resolver "$r"; done
  elif [ -r /etc/resolv.conf ]; then
    while read -r key val rest || [ -n "$key" ]; do
      case "$key" in
        nameserver) add_resolver "$val" ;;
        '#')
          # newer Docker releases list the embedded resolver's upstream servers here;
          # host(ADDR) ones are queried from the host's namespace, not through this chain
          if [ "$val" = "ExtServers:" ]; then
            read -r -a words <<<"${rest//[\[\]]/ }"
            for s in "${words[@]}"; do
              case "$s" in host\(*) ;; *) add_resolver "$s" ;; esac
            done
          fi
          ;;
      esac
    done </etc/resolv.conf
  fi
  for r in "${EXTRA_RESOLVERS[@]}"; do add_resolver "$r"; done
  if ((${#RESOLVERS[@]} == 0)); then
    warn "no DNS server found (no nameserver in /etc/resolv.conf): DNS is blocked except over loopback"
    return 0
  fi
  local only_loopback=1 docker=0
  for r in "${RESOLVERS[@]}"; do
    case "$r" in 127.0.0.11) docker=1 ;; 127.*|::1) ;; *) only_loopback=0 ;; esac
  done
  if [ "$docker" = 1 ] && [ "$only_loopback" = 1 ]; then
    warn "DNS goes through Docker's embedded resolver (127.0.0.11), which forwards from inside this container: its upstream servers must be allowed too, or names stop resolving. Pass them with --resolver ADDR (egress-tui fills them in when it generates this script)."
  fi
}

# -- resolving the allowlist ------------------------------------------------------------

declare -A NET4=() NET6=() PORT4=() PORT6=()   # set entry -> comment
UNRESOLVED=()
FIRST_NAME='' FIRST_ADDR='' FIRST_PORT=''

add_address() {  # ADDR PORT WHY: an address or a network into the set entries
  local a=$1 port=$2 why=$3 proto
  if [ -z "$port" ]; then
    if [[ "$a" == *:* ]]; then NET6[$a]=$why; else NET4[$a]=$why; fi
    return 0
  fi
  for proto in "${PORT_PROTOS[@]}"; do
    if [[ "$a" == *:* ]]; then PORT6["$a,$proto:$port"]=$why; else PORT4["$a,$proto:$port"]=$why; fi
  done
}

lookup() {  # NAME -> its addresses, one a line: IPv4 ones first
  local a rest
  { with_timeout 15 getent ahostsv4 "$1" 2>/dev/null || true; } | while read -r a rest; do
    if [[ "$a" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then printf '%s\n' "$a"; fi
  done | LC_ALL=C sort -u
  # ahostsv6 also lists IPv4 addresses as ::ffff:a.b.c.d: those are not IPv6 destinations
  { with_timeout 15 getent ahostsv6 "$1" 2>/dev/null || true; } | while read -r a rest; do
    case "$a" in ::ffff:*|::FFFF:*) continue ;; esac
    if [[ "$a" == *:* && "$a" =~ ^[0-9A-Fa-f:]+$ ]]; then printf '%s\n' "$a"; fi
  done | LC_ALL=C sort -u
}

is_loopback() {  # ADDR: this very namespace (127.0.0.0/8, ::1, the unspecified addresses)?
  case "$1" in
    127.*|0.0.0.0|::1|::|0:0:0:0:0:0:0:1|0:0:0:0:0:0:0:0) return 0 ;;
  esac
  return 1
}

resolve_allowlist() {
  local i kind pat port why a addrs
  for i in "${!ENTRY_KIND[@]}"; do
    kind=${ENTRY_KIND[$i]} pat=${ENTRY_PAT[$i]} port=${ENTRY_PORT[$i]} why=${ENTRY_WHY[$i]}
    if [ "$kind" = net ]; then
      add_address "$pat" "$port" "$why"
      continue
    fi
    addrs=()
    mapfile -t addrs < <(lookup "$pat")
    if ((${#addrs[@]} == 0)); then
      if [ "$PROXY_ONLY" = 1 ]; then
        die "proxy $pat did not resolve: nothing applied (proxy-only: with the proxy unreachable nothing could get out)"
      fi
      warn "$pat did not resolve: skipped (it stays blocked; run $PROG again once it resolves)"
      UNRESOLVED+=("$pat")
      continue
    fi
    if [ "$PROXY_ONLY" = 1 ]; then
      for a in "${addrs[@]}"; do
        if is_loopback "$a"; then
          die "proxy $pat is on a loopback address ($a): it runs inside the container, where this firewall cannot tell its traffic from anything else's; nothing applied"
        fi
      done
    fi
    for a in "${addrs[@]}"; do add_address "$a" "$port" "$why"; done
    if [ -z "$FIRST_NAME" ]; then FIRST_NAME=$pat FIRST_ADDR=${addrs[0]} FIRST_PORT=${port:-443}; fi
    say "$pat${port:+:$port}: ${addrs[*]}"
  done
  for pat in "${WILDCARDS[@]}"; do
    warn "$pat is not allowed by this script: a wildcard cannot be resolved once (egress-tui enforces it from the DNS answers it sees); list the exact host names you need"
  done
}

# -- apply, with rollback ----------------------------------------------------------------

MAIN_PID=$BASHPID
SAVED4='' SAVED6='' SETS_BEFORE=''
TOUCHED4=0 TOUCHED6=0
CREATED=() SWAPPED=()

rollback() {  # [EXIT STATUS]: put back what was there, then exit
  local rc=${1:-$?} s
  # a failure inside $(...) runs this in the subshell: only the main shell restores
  if [ "$BASHPID" != "$MAIN_PID" ]; then exit "$rc"; fi
  trap - ERR INT TERM HUP
  set +e
  ((rc)) || rc=1
  printf '%s: error: failed (exit %s); putting back the firewall that was there before\n' "$PROG" "$rc" >&2
  if [ "$TOUCHED6" = 1 ]; then ip6tables-restore -T filter <<<"$SAVED6"; fi
  if [ "$TOUCHED4" = 1 ]; then iptables-restore -T filter <<<"$SAVED4"; fi
  for s in "${SWAPPED[@]}"; do ipset swap "$s$NEW" "$s"; done
  for s in "${CREATED[@]}"; do ipset destroy "$s" 2>/dev/null; done
  for s in "${LIVE_SETS[@]}"; do ipset destroy "$s$NEW" 2>/dev/null; done
  exit "$rc"
}

in_list() {  # WORD LINES: is WORD one of the lines?
  [[ $'\n'"$2"$'\n' == *$'\n'"$1"$'\n'* ]]
}

apply() {
  local s fam kind input4 input6 sets hook4=0 hook6=0
  SAVED4=$(iptables-save -t filter)
  SAVED6=$(ip6tables-save -t filter)
  SETS_BEFORE=$(ipset list -n)
  if (($(count_hooks "$SAVED4") > 0)); then hook4=1; fi
  if (($(count_hooks "$SAVED6") > 0)); then hook6=1; fi
  sets=$(set_input)
  input4=$(rules 4 "$hook4")
  input6=$(rules 6 "$hook6")
  trap rollback ERR
  trap 'rollback 130' INT
  trap 'rollback 143' TERM
  trap 'rollback 129' HUP

  # 1. the new contents, aside (a "-new" set a killed run left behind is replaced)
  for s in "${LIVE_SETS[@]}"; do ipset destroy "$s$NEW" 2>/dev/null || true; done
  ipset -exist restore <<EGRESS_TUI_EOF
$sets
EGRESS_TUI_EOF
  # egress-tui's live updater (DNS answers -> sets) syncs through this scratch set
  ipset -exist create "$SYNC_SET" hash:ip family inet timeout 1
  if ! in_list "$SYNC_SET" "$SETS_BEFORE"; then CREATED+=("$SYNC_SET"); fi
  # 2. empty live sets where none exist yet, so the swap and the rules have a target
  for s in "${LIVE_SETS[@]}"; do
    if ! in_list "$s" "$SETS_BEFORE"; then
      fam=inet kind=hash:net
      if [[ "$s" == *v6* ]]; then fam=inet6; fi
      if [[ "$s" == *-port ]]; then kind=hash:net,port; fi
      ipset create "$s" "$kind" family "$fam" timeout 0 comment
      CREATED+=("$s")
    fi
  done
  # 3. swap: the live sets now hold the new entries (the old ones sit in the "-new" sets)
  for s in "${LIVE_SETS[@]}"; do
    ipset swap "$s$NEW" "$s"
    SWAPPED+=("$s")
  done
  # 4. one transaction per family
  TOUCHED4=1
  iptables-restore --noflush <<EGRESS_TUI_EOF
$input4
EGRESS_TUI_EOF
  TOUCHED6=1
  ip6tables-restore --noflush <<EGRESS_TUI_EOF
$input6
EGRESS_TUI_EOF
  # committed
  trap - ERR INT TERM HUP
  SWAPPED=() CREATED=() TOUCHED4=0 TOUCHED6=0
  for s in "${LIVE_SETS[@]}"; do ipset destroy "$s$NEW" 2>/dev/null || true; done
}

# -- after applying: like the original's `curl https://example.com` check, without curl --

tcp_open() {  # ADDR PORT: can we open a TCP connection within 3 s?
  # shellcheck disable=SC2016  # $1 and $2 belong to the inner bash
  with_timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

verify() {
  local bad=0 a
  if ! command -v timeout >/dev/null 2>&1; then
    warn "timeout (coreutils) not found: skipping the checks"
    return 0
  fi
  if [ -n "$FIRST_NAME" ]; then
    if with_timeout 6 getent ahosts "$FIRST_NAME" >/dev/null 2>&1; then
      say "check: DNS still answers ($FIRST_NAME resolves)"
    else
      printf '%s: error: check: %s no longer resolves: DNS to %s is not enough (Docker? pass the upstream servers with --resolver)\n' \
        "$PROG" "$FIRST_NAME" "${RESOLVERS[*]:-no resolver}" >&2
      bad=1
    fi
  fi
  if [ "$bad" = 1 ]; then
    say "check: blocked-connection check skipped (no DNS)"
  elif [ -n "$DENY_CHECK_NAME" ]; then
    a=$(lookup "$DENY_CHECK_NAME")
    a=${a%%$'\n'*}
    if [ -z "$a" ]; then
      say "check: $DENY_CHECK_NAME does not resolve here; blocked-connection check skipped"
    elif [ -n "${NET4[$a]+x}${NET6[$a]+x}" ]; then
      say "check: $DENY_CHECK_NAME ($a) is in the allowlist; blocked-connection check skipped"
    elif tcp_open "$a" 443; then
      printf '%s: error: check: %s (%s) port 443 is reachable: the firewall does not hold\n' \
        "$PROG" "$DENY_CHECK_NAME" "$a" >&2
      bad=1
    else
      say "check: $DENY_CHECK_NAME ($a) port 443 is blocked, as expected"
    fi
  fi
  if [ -n "$FIRST_ADDR" ]; then
    if tcp_open "$FIRST_ADDR" "$FIRST_PORT"; then
      say "check: $FIRST_NAME ($FIRST_ADDR) port $FIRST_PORT is reachable, as expected"
    else
      warn "check: $FIRST_NAME ($FIRST_ADDR) port $FIRST_PORT did not answer within 3 s (allowed by the firewall: the server may be down or not listen there)"
    fi
  fi
  return "$bad"
}

# -- remove, status ----------------------------------------------------------------------

remove() {
  local fam save restore cur n i input found=0 s
  for fam in 4 6; do
    if [ "$fam" = 4 ]; then save=iptables-save restore=iptables-restore; else save=ip6tables-save restore=ip6tables-restore; fi
    cur=$("$save" -t filter)
    has_chain "$cur" || continue
    found=1
    n=$(count_hooks "$cur")
    input='*filter'$'\n'
    for ((i = 0; i < n; i++)); do input+="-D OUTPUT -j $CHAIN"$'\n'; done
    input+="-F $CHAIN"$'\n'"-X $CHAIN"$'\n'"COMMIT"
    "$restore" --noflush <<<"$input"
  done
  while IFS= read -r s; do
    case "$s" in "$PREFIX"*) ipset destroy "$s"; found=1 ;; esac
  done < <(ipset list -n)
  if [ "$found" = 1 ]; then say "egress-tui firewall removed"; else say "no egress-tui firewall here"; fi
  if [ -n "${LOCK_FILE:-}" ]; then rm -f "$LOCK_FILE"; fi
}

status() {
  local fam save out line on=1 any=0 n s total
  local -A drops=() entries=()
  local re="^\\[([0-9]+):[0-9]+\\] -A ${CHAIN} .*-j (DROP|REJECT)"
  for fam in 4 6; do
    if [ "$fam" = 4 ]; then save=iptables-save; else save=ip6tables-save; fi
    out=$("$save" -c -t filter)
    if has_chain "$out"; then any=1; else on=0; fi
    if (($(count_hooks "$out") > 0)); then any=1; else on=0; fi
    total=0
    while IFS= read -r line; do
      if [[ "$line" =~ $re ]]; then total=$((total + BASH_REMATCH[1])); fi
    done <<<"$out"
    drops[$fam]=$total
    total=0
    if [ "$fam" = 4 ]; then set -- "$SET4" "$SET4P"; else set -- "$SET6" "$SET6P"; fi
    for s in "$@"; do
      while IFS= read -r line; do
        case "$line" in "Number of entries: "*) n=${line#Number of entries: }; total=$((total + n)) ;; esac
      done < <(ipset list -t "$s" 2>/dev/null || true)
    done
    entries[$fam]=$total
  done
  if [ "$on" = 1 ]; then
    say "egress-tui firewall: on"
  elif [ "$any" = 1 ]; then
    say "egress-tui firewall: PARTIAL (run $PROG again, or $PROG --remove)"
  else
    say "egress-tui firewall: off"
  fi
  say "dropped: IPv4 ${drops[4]} packets, IPv6 ${drops[6]} packets"
  say "addresses in sets: IPv4 ${entries[4]}, IPv6 ${entries[6]}"
  [ "$on" = 1 ] || return 3
}

usage() {
  cat <<'EGRESS_TUI_EOF'
@USAGE@
EGRESS_TUI_EOF
}

# -- main ---------------------------------------------------------------------------------

main() {
  local mode=apply verify_after=1 rc=0
  while (($#)); do
    case "$1" in
      --remove) mode=remove ;;
      --status) mode=status ;;
      --dry-run) mode=dry-run ;;
      --no-verify) verify_after=0 ;;
      --resolver)
        (($# >= 2)) || usage_error "--resolver needs an address"
        is_ip "$2" || usage_error "--resolver $2: not an IP address"
        EXTRA_RESOLVERS+=("$2")
        shift
        ;;
      --resolver=*)
        is_ip "${1#*=}" || usage_error "$1: not an IP address"
        EXTRA_RESOLVERS+=("${1#*=}")
        ;;
      -h|--help) usage; return 0 ;;
      *) usage_error "unknown argument '$1'" ;;
    esac
    shift
  done
  case "$mode" in
    status)
      need_root
      status || rc=$?
      return "$rc"
      ;;
    remove)
      need_root
      take_lock
      remove
      return 0
      ;;
    dry-run)
      need_tools getent
      load_resolvers
      resolve_allowlist >&2
      printf '# ipset -exist restore\n'
      set_input
      printf '# iptables-restore --noflush (IPv4)\n'
      rules 4 0
      printf '# ip6tables-restore --noflush (IPv6)\n'
      rules 6 0
      return 0
      ;;
  esac
  need_root getent
  take_lock
  load_resolvers
  resolve_allowlist
  apply
  if [ "$PROXY_ONLY" = 1 ]; then
    say "applied, proxy only: the only way out is ${ENTRY_PAT[*]} ($((${#PORT4[@]} + ${#PORT6[@]})) set entries); DNS only to ${RESOLVERS[*]:-loopback}; everything else is blocked"
  else
    say "applied: $((${#NET4[@]} + ${#PORT4[@]})) IPv4 and $((${#NET6[@]} + ${#PORT6[@]})) IPv6 set entries; DNS only to ${RESOLVERS[*]:-loopback}; everything else is blocked"
  fi
  if ((${#UNRESOLVED[@]})); then warn "not resolved, so blocked: ${UNRESOLVED[*]}"; fi
  if [ "$verify_after" = 1 ]; then
    verify || return 4
  fi
  return 0
}

main "$@"
