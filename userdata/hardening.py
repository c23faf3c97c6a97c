"""Host hardening a PoP boots with (docs/security.md): systemd sandboxing for the units we ship and drop-ins for
Debian's bird, nsd and caddy units, an SSH policy, and kernel settings for an anycast host.

Every directive is from systemd.exec(5) / systemd.resource-control(5) of systemd 252 (Debian 12). What each service
needs was read from its code or its Debian unit (/lib/systemd/system/{bird,nsd,caddy}.service); the machine lab boots
these files under systemd and runs the health faults, the drain and the HTTPS renewal against them.
`systemd-analyze security --offline=true` scores them (tests/unit/test_hardening.py, bench/hardening.py).
"""

from __future__ import annotations

from infra.contracts import BIRD_SOCKET, LEGO_PATH, REBOOT_PEERS_FILE, TLS_CERT_FILE

# What no service of a PoP needs: the kernel's knobs, other users' files, devices, new privileges, exotic sockets.
# One drop-in, the same bytes for every service (SANDBOX_DROPIN in each unit's .d/), written once in the user data
# (a YAML anchor: userdata/render.py). SystemCallFilter lines are not here: systemd takes the first one read as the
# kind of list (allow or deny), so each unit keeps its filter lines together and in order (_SYSCALLS first).
SANDBOX_DROPIN = "sandbox.conf"
SANDBOX_TEXT = "\n".join([
    "# Rendered by anycast: the sandbox every PoP service shares (docs/security.md).",
    "[Service]",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",  # lists add up: BIRD adds AF_NETLINK
    ""])
# A call outside the filter fails with EPERM instead of killing the service (Go's setrlimit at start is best-effort).
_SYSCALLS = ["SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM"]
# Not for anycast-tls, which chowns (@chown is part of @privileged).
_NO_PRIVILEGED = "SystemCallFilter=~@privileged @resources"


# Every service of ours is named anycast-*: one prefix drop-in (systemd.unit(5): "anycast-.service.d/" applies to
# every anycast-*.service; systemd 246 and later, Debian 12 has 252) gives them all the shared sandbox, so the user
# data writes it once for all of them and a new anycast-* service cannot be shipped without it.
OURS_SANDBOX = "/etc/systemd/system/anycast-.service.d/sandbox.conf"


def sandbox_path(unit: str) -> str:
    return f"/etc/systemd/system/{unit}.d/{SANDBOX_DROPIN}"


# The health agent (userdata/files/anycast-health.py, service mode) reads health.json and the drain file, checks
# HTTP/DNS over TCP/UDP, talks to BIRD's control socket (AF_UNIX, srw-rw---- bird:bird: the group is enough), answers
# /status on a port above 1024 and notifies systemd ($NOTIFY_SOCKET). It writes nothing: `--drain` is an operator's
# command run from a root shell, outside this unit. So: an unprivileged throw-away user in group bird, no capability.
HEALTH_SANDBOX = [
    "DynamicUser=yes",
    "SupplementaryGroups=bird",
    "CapabilityBoundingSet=",
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "ProcSubset=pid",
    "UMask=0077",
]

# anycast-tls (userdata/files/anycast-tls.py) runs as root: it writes the key and certificate for group caddy
# (chown: CAP_CHOWN), reads the 0600 root access-key file and reloads Caddy through systemctl (root's right on
# systemd's socket). It writes only the certificate directory and, on the issuer, lego's state. HTTPS to S3 and the CA.
TLS_SANDBOX = [
    "CapabilityBoundingSet=CAP_CHOWN",
    *_SYSCALLS,
    "SystemCallFilter=~@resources",
    "ProcSubset=pid",
    f"ReadWritePaths={TLS_CERT_FILE.rsplit('/', 1)[0]}",
    "UMask=0077",
]
# The fetch also writes the reboot peer list into /etc/anycast (REBOOT_PEERS_FILE, STATUS_PEERS_NFT); loading the
# nftables sets is anycast-status-peers.service's: nft over netlink with CAP_NET_ADMIN and nothing else.
TLS_FETCH_PEERS = [f"ReadWritePaths={REBOOT_PEERS_FILE.rsplit('/', 1)[0]}"]
STATUS_PEERS_SANDBOX = [
    "CapabilityBoundingSet=CAP_NET_ADMIN",
    "RestrictAddressFamilies=AF_NETLINK",  # lists add up (SANDBOX_TEXT's)
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "ProcSubset=pid",
]
TLS_ISSUE_STATE = f"StateDirectory={LEGO_PATH.removeprefix('/var/lib/').split('/')[0]}"

# anycast-reboot (userdata/files/anycast-reboot.py) runs as root: `systemctl reboot` is root's right on systemd's
# socket, no capability. It runs the health agent's drain, which writes the drain file (StateDirectory), talks to
# BIRD's socket (group bird), reads /proc/net/tcp (so no ProcSubset=pid) and the ruleset's packet counter (`nft` over
# netlink: CAP_NET_ADMIN, the only capability), and asks peers' /status over HTTP.
REBOOT_SANDBOX = [
    "SupplementaryGroups=bird",
    "CapabilityBoundingSet=CAP_NET_ADMIN",
    "RestrictAddressFamilies=AF_NETLINK",  # lists add up (SANDBOX_TEXT's)
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "StateDirectory=anycast",
    "UMask=0022",
]

# The oneshots at boot run as root for a second each: anycast-addresses (``ip``: the service addresses on anycast0) and
# anycast-neighbor-route (``ip -6 route replace``) need netlink and CAP_NET_ADMIN only; anycast-local-addresses reads
# the addresses over netlink and writes the zone include, which its directory's owner (root) may do without any
# capability. anycast0's ``dummy`` module is loaded at boot by modules-load.d (HOST_FILES), not on the unit's behalf.
def oneshot_sandbox(capabilities: str = "", writes: str | None = None) -> list[str]:
    return [f"CapabilityBoundingSet={capabilities}", "RestrictAddressFamilies=AF_NETLINK", *_SYSCALLS, _NO_PRIVILEGED,
            *([f"ReadWritePaths={writes}"] if writes else []), "UMask=0022"]


# Debian's bird.service starts BIRD as root (ExecStartPre prepare-environment chowns /run/bird) and BIRD then drops to
# user bird keeping its network capabilities (-u/-g). Here systemd starts it as bird directly with only those
# capabilities (BGP on port 179, its sockets' options) and makes /run/bird itself; the socket BIRD creates there is
# 0660 bird:bird (BIRD_SOCKET), which the health agent and prometheus-bird-exporter (user bird) use.
BIRD_DROPIN = "/etc/systemd/system/bird.service.d/hardening.conf"
BIRD_DROPIN_TEXT = "\n".join([
    "[Service]",
    "ExecStartPre=",
    "ExecStartPre=/usr/sbin/bird -p",
    "ExecStart=",
    "ExecStart=/usr/sbin/bird -f $BIRD_ARGS",
    "User=bird",
    "Group=bird",
    f"RuntimeDirectory={BIRD_SOCKET.split('/')[2]}",
    "RuntimeDirectoryMode=0750",
    "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
    "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_NETLINK",
    "UMask=0027",
    ""])

# Debian's nsd.service is sandboxed already (exposure 5.0) but starts NSD as root, which binds 53 and then drops to
# user nsd itself (CAP_SETUID/SETGID/CHOWN). Here systemd starts it as nsd with only CAP_NET_BIND_SERVICE, and
# nsd.conf says `username: ""` so NSD switches nothing itself (templates/nsd.conf.j2; nsd.conf(5): chroot is empty
# in Debian's build). What NSD writes, its database, xfrd.state and zone.list, is in /var/lib/nsd (owned by nsd, Debian's
# postinst); it only reads /etc/nsd. No ip-transparent, so none of Debian's CAP_NET_ADMIN/CAP_NET_RAW.
# `SystemCallFilter=` first empties Debian's deny list so that ours is an allow list (see SANDBOX_TEXT).
# KillMode=mixed, as NSD's own unit has it (https://github.com/NLnetLabs/nsd/blob/master/contrib/nsd.service) and
# Debian's lacks: the unit's main PID is xfrd (NSD forks, the parent becomes xfrd), which on SIGTERM asks the serving
# process to shut down over their socket. With Debian's control-group both get SIGTERM at once; when the server has
# closed the socket first, xfrd logs "error writing shutdown to main: Broken pipe" at priority err, on a random share of
# restarts (runcmd restarts NSD at every first boot). Mixed: xfrd alone gets SIGTERM, the rest leave in order.
NSD_DROPIN = "/etc/systemd/system/nsd.service.d/hardening.conf"
NSD_DROPIN_TEXT = "\n".join([
    "[Service]",
    "User=nsd",
    "Group=nsd",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "SystemCallFilter=",
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_NETLINK",  # NSD lists the interfaces at start (getifaddrs); without it it exits
    "UMask=0027",
    "KillMode=mixed",
    ""])

# Debian's caddy.service runs as caddy with CAP_NET_BIND_SERVICE (ports 80/443), ProtectSystem=full. Caddy writes only
# its data and config directories under its home (/var/lib/caddy: autosave.json, locks); the admin API, which
# `caddy reload` (ExecReload) uses, is TCP on localhost:2019 (Caddyfile).
CADDY_DROPIN = "/etc/systemd/system/caddy.service.d/hardening.conf"
CADDY_DROPIN_TEXT = "\n".join([
    "[Service]",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    *_SYSCALLS,
    _NO_PRIVILEGED,
    "ProcSubset=pid",
    "ReadWritePaths=/var/lib/caddy",
    "UMask=0027",
    ""])

DROPINS = {BIRD_DROPIN: BIRD_DROPIN_TEXT, NSD_DROPIN: NSD_DROPIN_TEXT, CADDY_DROPIN: CADDY_DROPIN_TEXT,
           **{sandbox_path(u): SANDBOX_TEXT for u in ("bird.service", "nsd.service", "caddy.service")}}

# sshd_config(5) of OpenSSH 9.2 (Debian 12): the first value read wins and Debian's sshd_config includes
# sshd_config.d/*.conf at its top, so this file (sorted early) decides. Keys only: the emergency way in without a key
# is the provider's console (docs/security.md). Algorithms: ssh-audit's policy for OpenSSH 9 (post-quantum hybrid
# and curve25519 key exchange, AEAD ciphers, encrypt-then-MAC only).
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-anycast.conf"
SSHD_DROPIN_TEXT = "\n".join([
    "# Rendered by anycast: keys only, current algorithms (docs/security.md).",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitEmptyPasswords no",
    "AuthenticationMethods publickey",
    "PermitRootLogin prohibit-password",
    "MaxAuthTries 3",
    "LoginGraceTime 30",
    "X11Forwarding no",
    "AllowAgentForwarding no",
    "AllowTcpForwarding no",
    "PermitTunnel no",
    "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org",
    "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com",
    "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
    # Lynis' SSH-7408/SSH-7440 (docs/security.md, "Lynis"): root is the one login (admin.sshKeys), two sessions per
    # connection, a dead client is dropped by sshd's own keepalive (encrypted) rather than TCP's, and each login's key
    # fingerprint is logged (VERBOSE).
    "AllowUsers root",
    "MaxSessions 2",
    "ClientAliveCountMax 2",
    "TCPKeepAlive no",
    "Compression no",
    "LogLevel VERBOSE",
    ""])

# Only net.* keys, per network namespace. Applied at boot by systemd-sysctl.service, and on the first boot by its
# binary from runcmd for this file alone (cloud-init writes it after the service has run). The machine lab's containers
# have a writable /proc/sys/net of their own (the rest read-only), and the lab reads every value back (lab/checks/audit.py).
#
# rp_filter=2 (loose, RFC 3704 section 2.3): a packet is dropped only when its source has no route at all. Strict mode
# (1) drops a packet that arrives on another interface than the one the route back to its source uses: on a PoP with
# more than one path (a second upstream, a private network) that drops real clients. Anycast replies leave from the
# service address on anycast0 by the default route: reverse-path filtering looks only at arriving packets, so loose
# mode never stops them. The kernel takes the larger of conf.all and conf.<interface>, so all=2 makes every interface
# at least loose. IPv6 has no rp_filter; nftables.conf drops what should not arrive.
SYSCTL_FILE = "/etc/sysctl.d/60-anycast.conf"
SYSCTL_TEXT = "\n".join([
    "# Rendered by anycast: kernel settings for an anycast PoP (docs/security.md).",
    "net.ipv4.tcp_syncookies = 1",
    "net.ipv4.conf.all.rp_filter = 2",
    "net.ipv4.conf.default.rp_filter = 2",
    "net.ipv4.conf.all.accept_redirects = 0",
    "net.ipv4.conf.default.accept_redirects = 0",
    "net.ipv4.conf.all.secure_redirects = 0",
    "net.ipv4.conf.default.secure_redirects = 0",
    "net.ipv6.conf.all.accept_redirects = 0",
    "net.ipv6.conf.default.accept_redirects = 0",
    "net.ipv4.conf.all.send_redirects = 0",
    "net.ipv4.conf.default.send_redirects = 0",
    "net.ipv4.conf.all.accept_source_route = 0",
    "net.ipv4.conf.default.accept_source_route = 0",
    "net.ipv6.conf.all.accept_source_route = 0",
    "net.ipv6.conf.default.accept_source_route = 0",
    "net.ipv4.icmp_echo_ignore_broadcasts = 1",
    "net.ipv4.icmp_ignore_bogus_error_responses = 1",
    # packets with impossible sources (the kernel rate-limits these lines)
    "net.ipv4.conf.all.log_martians = 1",
    "net.ipv4.conf.default.log_martians = 1",
    ""])
# Host-wide kernel keys (not per network namespace) that Lynis' KRNL-6000 profile asks for and a PoP loses nothing by:
# kernel pointers hidden, no unprivileged BPF or perf, no line-discipline autoload, the protected_* link and file rules
# of a shared /tmp. A VM applies them like the file above; the lab's containers cannot (their /proc/sys outside net/ is
# the host's, read-only), and systemd-sysctl skips a read-only key without failing (EROFS: "ignoring").
KERNEL_SYSCTL_FILE = "/etc/sysctl.d/61-anycast-kernel.conf"
KERNEL_SYSCTL_TEXT = "\n".join([
    "# Rendered by anycast: host-wide kernel settings (docs/security.md).",
    "kernel.kptr_restrict = 2",
    "kernel.unprivileged_bpf_disabled = 1",
    "kernel.perf_event_paranoid = 3",
    "kernel.core_uses_pid = 1",
    "kernel.ctrl-alt-del = 0",
    "dev.tty.ldisc_autoload = 0",
    "fs.protected_fifos = 2",
    "fs.protected_regular = 2",
    "fs.protected_symlinks = 1",
    "fs.protected_hardlinks = 1",
    ""])
SYSCTL_APPLY = ["/lib/systemd/systemd-sysctl", SYSCTL_FILE, KERNEL_SYSCTL_FILE]

# Smaller host files that Lynis looks for (docs/security.md, "Lynis": each finding fixed here or explained there).
BANNER = ("Authorized access only. This system is private and monitored: activity is logged and may be used as "
          "evidence; unauthorized use is prohibited and may be prosecuted.\n")
HOST_FILES = {
    # Debian's nsd.conf (in place until cloud-init writes ours, after the packages) includes this directory, has
    # NSD switch to user nsd and enables the remote control, whose keys are root's 0640: NSD, started as nsd by
    # NSD_DROPIN, would fail at the package's first start (measured in the machine lab). Ours includes nothing here.
    "/etc/nsd/nsd.conf.d/anycast-first-start.conf": "# Rendered by anycast: for Debian's nsd.conf, until ours "
                                                    "replaces it.\nserver:\n  username: \"\"\n"
                                                    "remote-control:\n  control-enable: no\n",
    "/etc/issue": BANNER,
    "/etc/issue.net": BANNER,
    # KRNL-5820: no core dumps (they can hold keys and the BGP password)
    "/etc/security/limits.d/10-anycast.conf": "# Rendered by anycast: no core dumps.\n* hard core 0\n",
    "/etc/systemd/coredump.conf.d/10-anycast.conf": "[Coredump]\nStorage=none\nProcessSizeMax=0\n",
    # USB-1000, STRG-1846, NETW-3200: a PoP has no USB or FireWire storage and speaks none of these protocols
    # (Lynis' NETW-3200 accepts only /bin/true for the protocols; either makes modprobe load nothing)
    "/etc/modprobe.d/anycast.conf": "# Rendered by anycast: modules a PoP never needs.\n" + "".join(
        f"install {m} /bin/false\n" for m in ("usb-storage", "firewire-core")) + "".join(
        f"install {m} /bin/true\n" for m in ("dccp", "sctp", "rds", "tipc")),
    # anycast0 is a dummy link (anycast-addresses.service): its module loaded at boot, before the sandboxed unit runs
    "/etc/modules-load.d/anycast.conf": "dummy\n",
    # SHLL-6220: an idle root shell (SSH or the console) ends after 15 minutes
    # KRNL-5820: and no core dumps from login shells either (the limits.d and coredump.conf.d files above)
    "/etc/profile.d/anycast-tmout.sh": "# Rendered by anycast: idle shells end after 15 minutes; no core dumps.\n"
                                       "TMOUT=900\nreadonly TMOUT\nexport TMOUT\nulimit -c 0\n",
    KERNEL_SYSCTL_FILE: KERNEL_SYSCTL_TEXT,
}
# AUTH-9286/AUTH-9328/AUTH-9230: Debian's login.defs, edited in place (its other settings stay Debian's): a stricter
# default umask for login sessions, password ageing for accounts made later (root's console password is not touched),
# and 65536 SHA-512 rounds (Debian: 5000, commented out) for a password set with chpasswd (ENCRYPT_METHOD SHA512).
LOGIN_DEFS_APPLY = ["sed", "-i", "-E", r"s/^(UMASK\s+).*/\1027/; s/^(PASS_MAX_DAYS\s+).*/\1365/; "
                    r"s/^(PASS_MIN_DAYS\s+).*/\11/; s/^#?(SHA_CRYPT_M(IN|AX)_ROUNDS)\s.*/\1 65536/", "/etc/login.defs"]
