//! The probe methods beyond ICMP, each through the uplink: a socket bound to the uplink's
//! interface and address and carrying its mark (so the fwmark rule sends it through the
//! uplink's table), answered within the probe's timeout. Each returns the time to the
//! answer, or why there was none. DNS messages are hickory-proto's, HTTP is hyper's.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Where a probe leaves from: the uplink's interface, its address, its mark.
#[derive(Debug, Clone)]
pub struct Path {
    pub interface: String,
    pub source: IpAddr,
    pub mark: u32,
}

/// A TCP connection accepted by `to` (then closed).
pub async fn tcp(path: &Path, to: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let stream = within(timeout, connect(path, to)).await?;
    drop(stream);
    Ok(start.elapsed())
}

/// A DNS query for `query` (A or AAAA, as the server's family) answered with NOERROR or
/// NXDOMAIN: the resolver works. SERVFAIL or REFUSED fail the probe.
pub async fn dns(
    path: &Path,
    to: SocketAddr,
    query: &str,
    id: u16,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let kind = if to.is_ipv6() {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    let name = Name::from_ascii(query).map_err(|e| e.to_string())?;
    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name, kind));
    let bytes = request.to_vec().map_err(|e| e.to_string())?;
    let socket = udp(path, to).await?;
    socket.send(&bytes).await.map_err(|e| e.to_string())?;
    let answer = within(timeout, async {
        let mut buf = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
            match Message::from_vec(&buf[..n]) {
                Ok(m)
                    if m.metadata.id == id && m.metadata.message_type == MessageType::Response =>
                {
                    return Ok(m.metadata.response_code);
                }
                // Not our answer (a late one, garbage): keep waiting.
                _ => continue,
            }
        }
    })
    .await?;
    match answer {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(start.elapsed()),
        code => Err(format!("the resolver answered {code}")),
    }
}

/// An HTTP GET of `host`/`path` from `to`, answered with `expect` (any 2xx when None). A
/// redirect is what a captive portal answers: it fails the probe, saying where it points.
pub async fn http(
    path: &Path,
    to: SocketAddr,
    host: &str,
    uri: &str,
    expect: Option<u16>,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let status = within(timeout, async {
        let stream = connect(path, to).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = hyper::Request::get(uri)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "multiwan-probe")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| l.chars().take(100).collect::<String>());
        Ok::<_, String>((response.status().as_u16(), location))
    })
    .await?;
    match status {
        (code, _) if expect.map_or((200..300).contains(&code), |e| e == code) => {
            Ok(start.elapsed())
        }
        (code @ 300..=399, Some(to)) => {
            Err(format!("HTTP {code} redirect to {to} (a captive portal?)"))
        }
        (code, _) => Err(format!(
            "HTTP {code}, expected {}",
            expect.map_or("2xx".to_string(), |e| e.to_string())
        )),
    }
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// A TCP connection from the uplink.
async fn connect(path: &Path, to: SocketAddr) -> Result<TcpStream, String> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind_device(Some(path.interface.as_bytes()))
        .map_err(|e| e.to_string())?;
    super::set_mark(std::os::fd::AsRawFd::as_raw_fd(&socket), path.mark)
        .map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(path.source, 0))
        .map_err(|e| e.to_string())?;
    socket.connect(to).await.map_err(|e| e.to_string())
}

/// A UDP socket from the uplink, connected to `to`.
async fn udp(path: &Path, to: SocketAddr) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind(SocketAddr::new(path.source, 0))
        .await
        .map_err(|e| e.to_string())?;
    socket
        .bind_device(Some(path.interface.as_bytes()))
        .map_err(|e| e.to_string())?;
    super::set_mark(std::os::fd::AsRawFd::as_raw_fd(&socket), path.mark)
        .map_err(|e| e.to_string())?;
    socket.connect(to).await.map_err(|e| e.to_string())?;
    Ok(socket)
}
