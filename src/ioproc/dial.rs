//! Plan 9 dial strings, and a connect that an ioproc can interrupt.
//!
//! A dial string names a network, a host and a service, separated by `!`:
//! `tcp!example.com!9fs`, `udp!10.0.0.1!53`, `net!::1!564` (`net` means tcp
//! here) or `unix!/path/to/socket`. [`parse`] resolves one into a [`Target`]
//! and [`connect`] opens a socket to it.
//!
//! An ioproc must be able to cancel a dial that hangs (a host that drops
//! the connection request). std's `TcpStream::connect` blocks in
//! `connect(2)` and retries on `EINTR`; [`connect`] instead starts a
//! non-blocking connect and waits for it in the ioproc's interruptible
//! `ppoll` (see `super::intr`), so an interrupt ends it at once.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::intr::IoState;

/// Where a dial string leads, with host and service names already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A TCP service; [`connect`] tries the addresses in this order.
    Tcp(Vec<SocketAddr>),
    /// A UDP service; [`connect`] tries the addresses in this order.
    Udp(Vec<SocketAddr>),
    /// A Unix-domain stream socket.
    Unix(PathBuf),
}

/// Size of `sockaddr_un.sun_path`, including the terminating NUL.
const SUN_PATH_LEN: usize = 108;

// Keeps SUN_PATH_LEN honest should libc's layout ever differ.
const _: () =
    assert!(size_of::<libc::sockaddr_un>() == size_of::<libc::sa_family_t>() + SUN_PATH_LEN);

/// Plan 9's names for its own TCP services, used when /etc/services lacks
/// them (it usually does).
const PLAN9_SERVICES: &[(&str, u16)] = &[("9fs", 564), ("ticket", 567), ("styx", 6666)];

/// The transport protocol of an internet dial string.
#[derive(Debug, Clone, Copy)]
enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The protocol's name as /etc/services spells it.
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Parses a Plan 9 dial string and resolves its host and service.
///
/// Accepts `tcp!host!port`, `udp!host!port`, `net!host!port` (tcp) and
/// `unix!path`. The host is a name for the system resolver or an IPv4 or
/// IPv6 literal (bare, as in `tcp!::1!564`, or bracketed, `[::1]`); the port
/// is a number or a service name from /etc/services, plus Plan 9's `9fs`,
/// `ticket` and `styx` for tcp.
///
/// Errors are [`ErrorKind::InvalidInput`] for a malformed string and
/// [`ErrorKind::NotFound`] for a host that does not resolve; their messages
/// quote the whole dial string.
pub(crate) fn parse(addr: &str) -> io::Result<Target> {
    if addr.is_empty() {
        return Err(invalid(addr, "empty dial string"));
    }
    let parts: Vec<&str> = addr.split('!').collect();
    match parts[0] {
        "tcp" | "net" => parse_inet(addr, Proto::Tcp, &parts[1..]).map(Target::Tcp),
        "udp" => parse_inet(addr, Proto::Udp, &parts[1..]).map(Target::Udp),
        "unix" => parse_unix(addr, &parts[1..]),
        net => Err(invalid(
            addr,
            format!("unknown network {net:?} (tcp, udp, unix, net)"),
        )),
    }
}

/// An error about dial string `addr`, quoting it so the user sees which one.
fn dial_error(kind: ErrorKind, addr: &str, what: impl Display) -> io::Error {
    io::Error::new(kind, format!("dial {addr:?}: {what}"))
}

/// A malformed-dial-string error.
fn invalid(addr: &str, what: impl Display) -> io::Error {
    dial_error(ErrorKind::InvalidInput, addr, what)
}

/// Parses the `host!port` after an internet network name.
fn parse_inet(addr: &str, proto: Proto, rest: &[&str]) -> io::Result<Vec<SocketAddr>> {
    const FORM: &str = "(expected net!host!port)";
    let (host, port) = match rest {
        [] => return Err(invalid(addr, format!("missing host and port {FORM}"))),
        [_] => return Err(invalid(addr, format!("missing port {FORM}"))),
        [host, port] => (*host, *port),
        _ => return Err(invalid(addr, format!("too many parts {FORM}"))),
    };
    // The port first: a typo there should not cost a DNS round trip.
    let port = parse_port(addr, port, proto)?;
    resolve(addr, host, port)
}

/// Parses a port number or looks up a service name.
fn parse_port(addr: &str, port: &str, proto: Proto) -> io::Result<u16> {
    if port.is_empty() {
        return Err(invalid(addr, "empty port"));
    }
    // All digits means a number, however large; anything else ("9fs",
    // "+80") is a service name.
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return match port.parse::<u16>() {
            Ok(n) if n != 0 => Ok(n),
            _ => Err(invalid(addr, format!("port {port} out of range"))),
        };
    }
    lookup_service(port, proto).ok_or_else(|| {
        invalid(
            addr,
            format!("unknown service {port:?} for {}", proto.name()),
        )
    })
}

/// Resolves a host name or address literal to socket addresses.
fn resolve(addr: &str, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let host = unbracket(addr, host)?;
    if host.is_empty() {
        return Err(invalid(addr, "empty host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let not_found = |why: String| {
        dial_error(
            ErrorKind::NotFound,
            addr,
            format!("host {host:?} not found{why}"),
        )
    };
    match (host, port).to_socket_addrs() {
        Ok(found) => {
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                Err(not_found(String::new()))
            } else {
                Ok(found)
            }
        }
        Err(e) => Err(not_found(format!(" ({e})"))),
    }
}

/// Strips the brackets from `[::1]`; a lone bracket is an error.
fn unbracket<'a>(addr: &str, host: &'a str) -> io::Result<&'a str> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Ok(inner);
    }
    if host.starts_with('[') || host.ends_with(']') {
        return Err(invalid(
            addr,
            format!("unbalanced brackets in host {host:?}"),
        ));
    }
    Ok(host)
}

/// Parses the `path` after `unix!`.
fn parse_unix(addr: &str, rest: &[&str]) -> io::Result<Target> {
    const FORM: &str = "(expected unix!path)";
    let path = match rest {
        [] => return Err(invalid(addr, format!("missing path {FORM}"))),
        [path] => *path,
        _ => return Err(invalid(addr, format!("too many parts {FORM}"))),
    };
    if let Some(problem) = unix_path_problem(path.as_bytes()) {
        return Err(invalid(addr, problem));
    }
    Ok(Target::Unix(PathBuf::from(path)))
}

/// Why `path` cannot go in a `sockaddr_un`, if it cannot.
fn unix_path_problem(path: &[u8]) -> Option<String> {
    if path.is_empty() {
        Some("empty path".to_string())
    } else if path.contains(&0) {
        Some("unix socket path contains a NUL byte".to_string())
    } else if path.len() >= SUN_PATH_LEN {
        Some(format!(
            "unix socket path too long: {} bytes, at most {} fit in sun_path",
            path.len(),
            SUN_PATH_LEN - 1
        ))
    } else {
        None
    }
}

/// Looks a service name up in /etc/services, then in Plan 9's own names.
fn lookup_service(name: &str, proto: Proto) -> Option<u16> {
    static SERVICES: OnceLock<HashMap<String, u16>> = OnceLock::new();
    let table = SERVICES.get_or_init(|| {
        // No file, or an unreadable one, leaves only the built-in names.
        std::fs::read("/etc/services")
            .map(|bytes| parse_services(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    });
    if let Some(&port) = table.get(&service_key(name, proto.name())) {
        return Some(port);
    }
    match proto {
        Proto::Tcp => PLAN9_SERVICES
            .iter()
            .find(|&&(n, _)| n == name)
            .map(|&(_, port)| port),
        Proto::Udp => None,
    }
}

/// The key of a service in the table [`parse_services`] builds.
fn service_key(name: &str, proto: &str) -> String {
    format!("{name}/{proto}")
}

/// Parses services(5) text into a table from `name/proto` (and
/// `alias/proto`) to port.
///
/// Lines are `name port/proto [alias ...] [# comment]`; lines that do not
/// fit are skipped rather than failing the whole file. The first entry for a
/// name wins, as with getservbyname(3).
fn parse_services(text: &str) -> HashMap<String, u16> {
    let mut table = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 || proto.is_empty() {
            continue;
        }
        for alias in std::iter::once(name).chain(fields) {
            table.entry(service_key(alias, proto)).or_insert(port);
        }
    }
    table
}

/// Connects to `t`: for tcp and udp, to the first address that accepts (if
/// none does, the last error is returned). An interrupt of the ioproc `st`
/// ends the dial at once with [`ErrorKind::Interrupted`], without trying
/// further addresses. The descriptor is blocking and close-on-exec.
pub(crate) fn connect(st: &IoState, t: &Target) -> io::Result<OwnedFd> {
    match t {
        Target::Tcp(addrs) => connect_any(st, addrs, libc::SOCK_STREAM),
        Target::Udp(addrs) => connect_any(st, addrs, libc::SOCK_DGRAM),
        Target::Unix(path) => connect_one(st, &RawAddr::unix(path)?, libc::SOCK_STREAM),
    }
}

/// Connects a socket of type `ty` to the first address that accepts.
fn connect_any(st: &IoState, addrs: &[SocketAddr], ty: libc::c_int) -> io::Result<OwnedFd> {
    let mut last = io::Error::new(ErrorKind::InvalidInput, "dial: no addresses to connect to");
    for addr in addrs {
        match connect_one(st, &RawAddr::inet(addr), ty) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Makes a non-blocking, close-on-exec socket and connects it to `addr`,
/// waiting for the connection in `ppoll`.
fn connect_one(st: &IoState, addr: &RawAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            addr.family(),
            ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2), so it is open and nothing
    // else owns it; the OwnedFd becomes its only owner and closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ptr, len) = addr.as_ptr();
    // SAFETY: ptr points to a sockaddr inside `addr`, which is borrowed for
    // the whole call and has len fully initialized bytes (the structs have no
    // padding, and len never exceeds their size); connect(2) only reads them
    // and keeps no pointer. fd is open because we own it.
    if unsafe { libc::connect(fd.as_raw_fd(), ptr, len) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }];
        st.wait(&mut p, None)?;
        let err = sockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
    }
    // The caller gets an ordinary blocking descriptor.
    // SAFETY: fcntl(2) on a descriptor we own, with integer arguments.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// A socket address in the kernel's layout.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
    /// The address and how many of its bytes are meaningful.
    Unix(libc::sockaddr_un, libc::socklen_t),
}

impl RawAddr {
    /// Converts an internet address.
    fn inet(addr: &SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                // s_addr is in network order: the octets as they stand.
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    /// Converts a Unix socket path, which must fit in `sun_path`.
    fn unix(path: &Path) -> io::Result<Self> {
        let bytes = path.as_os_str().as_bytes();
        if let Some(problem) = unix_path_problem(bytes) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("unix socket {path:?}: {problem}"),
            ));
        }
        let mut sun = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; SUN_PATH_LEN],
        };
        for (dst, &src) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // The path and its NUL; unix_path_problem bounds it by sun_path.
        let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
        Ok(RawAddr::Unix(sun, len as libc::socklen_t))
    }

    /// The address family, for socket(2).
    fn family(&self) -> libc::c_int {
        match self {
            RawAddr::V4(_) => libc::AF_INET,
            RawAddr::V6(_) => libc::AF_INET6,
            RawAddr::Unix(..) => libc::AF_UNIX,
        }
    }

    /// The address as connect(2) takes it.
    fn as_ptr(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            RawAddr::V4(a) => (
                std::ptr::from_ref(a).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            RawAddr::V6(a) => (
                std::ptr::from_ref(a).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
            RawAddr::Unix(a, len) => (std::ptr::from_ref(a).cast(), *len),
        }
    }
}

/// Reads an integer socket option of `fd`.
pub(crate) fn sockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `v` and `len` are live locals,
    // and `len` gives `v`'s size.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut v).cast(), &mut len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    /// A connect outside any ioproc: nothing interrupts it.
    fn connect(t: &Target) -> io::Result<OwnedFd> {
        super::connect(&IoState::default(), t)
    }

    const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    /// Bounds every blocking read in these tests.
    const WAIT: Duration = Duration::from_secs(5);

    fn tcp(ip: IpAddr, port: u16) -> Target {
        Target::Tcp(vec![SocketAddr::new(ip, port)])
    }

    /// Checks that `addr` fails with `kind`, quotes itself and says `what`.
    fn assert_err(addr: &str, kind: ErrorKind, what: &str) {
        let e = match parse(addr) {
            Ok(t) => panic!("{addr:?} parsed as {t:?}"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert_eq!(e.kind(), kind, "{msg}");
        assert!(
            msg.starts_with(&format!("dial {addr:?}: ")),
            "{msg:?} does not quote {addr:?}"
        );
        assert!(msg.contains(what), "{msg:?} does not say {what:?}");
    }

    #[test]
    fn parses_tcp_udp_and_net() {
        assert_eq!(parse("tcp!127.0.0.1!564").unwrap(), tcp(LOCAL4, 564));
        assert_eq!(
            parse("udp!10.0.0.1!53").unwrap(),
            Target::Udp(vec!["10.0.0.1:53".parse().unwrap()])
        );
        assert_eq!(parse("net!127.0.0.1!80").unwrap(), tcp(LOCAL4, 80));
        assert_eq!(parse("net!127.0.0.1!9fs").unwrap(), tcp(LOCAL4, 564));
    }

    #[test]
    fn parses_ipv6_literals() {
        assert_eq!(parse("tcp!::1!564").unwrap(), tcp(LOCAL6, 564));
        assert_eq!(parse("tcp![::1]!564").unwrap(), tcp(LOCAL6, 564));
        assert_eq!(
            parse("udp!fe80::1:2!7").unwrap(),
            Target::Udp(vec!["[fe80::1:2]:7".parse().unwrap()])
        );
    }

    #[test]
    fn resolves_names() {
        let Target::Tcp(addrs) = parse("tcp!localhost!564").unwrap() else {
            panic!("not tcp");
        };
        assert!(!addrs.is_empty());
        for a in addrs {
            assert!(a.ip().is_loopback(), "{a}");
            assert_eq!(a.port(), 564);
        }
    }

    #[test]
    fn parses_unix() {
        assert_eq!(
            parse("unix!/tmp/x.sock").unwrap(),
            Target::Unix("/tmp/x.sock".into())
        );
        let longest = format!("unix!/{}", "a".repeat(SUN_PATH_LEN - 2));
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn numeric_ports() {
        assert_eq!(parse("tcp!127.0.0.1!1").unwrap(), tcp(LOCAL4, 1));
        assert_eq!(parse("tcp!127.0.0.1!65535").unwrap(), tcp(LOCAL4, 65535));
        assert_eq!(parse("tcp!127.0.0.1!00080").unwrap(), tcp(LOCAL4, 80));
    }

    #[test]
    fn plan9_service_names() {
        assert_eq!(parse("tcp!127.0.0.1!9fs").unwrap(), tcp(LOCAL4, 564));
        assert_eq!(parse("tcp!127.0.0.1!ticket").unwrap(), tcp(LOCAL4, 567));
        assert_eq!(parse("tcp!127.0.0.1!styx").unwrap(), tcp(LOCAL4, 6666));
    }

    #[test]
    fn system_service_names() {
        // Only where this machine's /etc/services lists ssh as 22/tcp.
        let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let listed = text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 2 && f[0] == "ssh" && f[1] == "22/tcp"
        });
        if listed {
            assert_eq!(parse("tcp!127.0.0.1!ssh").unwrap(), tcp(LOCAL4, 22));
            assert_eq!(parse("net!127.0.0.1!ssh").unwrap(), tcp(LOCAL4, 22));
        } else {
            eprintln!("note: /etc/services has no ssh 22/tcp; skipped");
        }
    }

    #[test]
    fn parses_services_text() {
        let text = "\
# Network services
\n   \t\n\
tcpmux\t1/tcp\t\t\t\t# TCP port service multiplexer
domain\t\t53/tcp\t\tnameserver dns  # DNS
domain\t\t53/udp
ssh 22/tcp
ssh 2222/tcp # a later duplicate loses
broken\t99
alsobroken x/tcp
zero 0/tcp
#commented 7/tcp
";
        let t = parse_services(text);
        assert_eq!(t.get("tcpmux/tcp"), Some(&1));
        assert_eq!(t.get("domain/tcp"), Some(&53));
        assert_eq!(t.get("domain/udp"), Some(&53));
        assert_eq!(t.get("nameserver/tcp"), Some(&53));
        assert_eq!(t.get("dns/tcp"), Some(&53));
        assert_eq!(t.get("nameserver/udp"), None);
        assert_eq!(t.get("ssh/tcp"), Some(&22));
        assert_eq!(t.get("DNS/tcp"), None);
        assert_eq!(t.len(), 6, "{t:?}");
    }

    #[test]
    fn malformed_strings() {
        let bad = ErrorKind::InvalidInput;
        assert_err("", bad, "empty dial string");
        assert_err("tcp", bad, "missing host and port (expected net!host!port)");
        assert_err(
            "tcp!localhost",
            bad,
            "missing port (expected net!host!port)",
        );
        assert_err("udp!localhost", bad, "missing port");
        assert_err("tcp!a!1!x", bad, "too many parts");
        assert_err("tcp!!80", bad, "empty host");
        assert_err("tcp![]!80", bad, "empty host");
        assert_err("tcp![::1!80", bad, "unbalanced brackets");
        assert_err("tcp!h!", bad, "empty port");
        assert_err(
            "foo!a!1",
            bad,
            "unknown network \"foo\" (tcp, udp, unix, net)",
        );
        assert_err("localhost", bad, "unknown network \"localhost\"");
        assert_err("tcp!h!99999", bad, "port 99999 out of range");
        assert_err("tcp!h!65536", bad, "port 65536 out of range");
        assert_err("tcp!h!0", bad, "port 0 out of range");
        assert_err(
            "tcp!h!123456789012345678901234567890",
            bad,
            "port 123456789012345678901234567890 out of range",
        );
        assert_err(
            "tcp!h!nosuchsvc",
            bad,
            "unknown service \"nosuchsvc\" for tcp",
        );
        assert_err(
            "net!h!nosuchsvc",
            bad,
            "unknown service \"nosuchsvc\" for tcp",
        );
        assert_err(
            "udp!h!nosuchsvc",
            bad,
            "unknown service \"nosuchsvc\" for udp",
        );
        assert_err("unix", bad, "missing path (expected unix!path)");
        assert_err("unix!", bad, "empty path");
        assert_err("unix!/a!b", bad, "too many parts (expected unix!path)");
        assert_err("unix!/a\0b", bad, "NUL");
        let long = format!("unix!/{}", "a".repeat(SUN_PATH_LEN - 1));
        assert_err(&long, bad, "too long: 108 bytes, at most 107");
    }

    #[test]
    fn unknown_host() {
        assert_err(
            "tcp!nosuch.invalid!80",
            ErrorKind::NotFound,
            "host \"nosuch.invalid\" not found",
        );
    }

    /// A socket path in a fresh directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir()
                .join(format!("thread9-dial-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn connects_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fd = connect(&parse(&format!("tcp!127.0.0.1!{port}")).unwrap()).unwrap();
        let mut client = TcpStream::from(fd);
        client.set_read_timeout(Some(WAIT)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(WAIT)).unwrap();

        client.write_all(b"Tversion").unwrap();
        let mut buf = [0; 8];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"Tversion");
        server.write_all(b"Rversion").unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"Rversion");
    }

    #[test]
    fn tries_addresses_in_order() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let fd = connect(&Target::Tcp(vec![closed, open])).unwrap();
        let client = TcpStream::from(fd);
        assert_eq!(client.peer_addr().unwrap(), open);
    }

    #[test]
    fn connects_unix() {
        let dir = TempDir::new("unix");
        let path = dir.0.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fd = connect(&parse(&format!("unix!{}", path.display())).unwrap()).unwrap();
        let mut client = std::os::unix::net::UnixStream::from(fd);
        let (mut server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"hello").unwrap();
        let mut buf = [0; 5];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[test]
    fn connects_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(WAIT)).unwrap();
        let port = server.local_addr().unwrap().port();
        let fd = connect(&parse(&format!("udp!127.0.0.1!{port}")).unwrap()).unwrap();
        let client = UdpSocket::from(fd);
        client.set_read_timeout(Some(WAIT)).unwrap();

        client.send(b"ping").unwrap();
        let mut buf = [0; 16];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        server.send_to(b"pong", from).unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }

    #[test]
    fn refused_tcp() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = connect(&tcp(LOCAL4, port)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn missing_unix_socket() {
        let dir = TempDir::new("missing");
        let e = connect(&Target::Unix(dir.0.join("nosuch"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn unix_path_too_long_for_connect() {
        let path = PathBuf::from(format!("/{}", "a".repeat(SUN_PATH_LEN)));
        let e = connect(&Target::Unix(path)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn no_addresses() {
        let e = connect(&Target::Tcp(vec![])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }

    /// A listener whose accept queue is full, so a further connect to it
    /// blocks (Linux drops the SYN) until its SYN retries run out. Returns
    /// the listener, the connections filling it, and whether it filled.
    fn full_listener() -> (TcpListener, Vec<TcpStream>, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // SAFETY: the descriptor is open and owned by `listener`, which
        // outlives the call; on Linux, listen(2) on a listening socket just
        // changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == ErrorKind::TimedOut => return (listener, fillers, true),
                Err(e) => panic!("filling the backlog: {e}"),
            }
        }
        (listener, fillers, false)
    }

    #[test]
    fn interrupted_connect_returns_at_once() {
        let (full, _fillers, filled) = full_listener();
        // A second, working address: were the interrupt taken as an
        // ordinary failure, connect would move on to it and succeed.
        let spare = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(vec![
            full.local_addr().unwrap(),
            spare.local_addr().unwrap(),
        ]);

        let st = std::sync::Arc::new(IoState::default());
        let st2 = st.clone();
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        // The dialing thread plays the ioproc: it blocks the signal and
        // waits in ppoll, as an ioproc does.
        let dialer = thread::spawn(move || {
            st2.start();
            let r = super::connect(&st2, &target).map(drop);
            st2.stop();
            let _ = tx.send(r);
        });
        thread::sleep(Duration::from_millis(100));
        if let Ok(r) = rx.try_recv() {
            eprintln!(
                "note: connect returned before the interrupt ({r:?}, backlog filled: {filled}); \
                 this machine cannot show an interrupted connect"
            );
            dialer.join().unwrap();
            return;
        }
        let interrupted_at = Instant::now();
        st.interrupt();
        let result = rx
            .recv_timeout(Duration::from_secs(1))
            .expect("connect still blocked a second after the interrupt");
        let e = result.expect_err("interrupted connect succeeded");
        assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
        eprintln!(
            "note: connect blocked, then returned Interrupted {:?} after the interrupt \
             ({:?} after starting)",
            interrupted_at.elapsed(),
            started.elapsed()
        );
        dialer.join().unwrap();
    }
}
