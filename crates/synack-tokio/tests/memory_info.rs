//! `TcpStream::info`: the core's TCP_INFO-like snapshot, through the runtime, on two stacks
//! joined by an in-memory link.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use synack_tokio::device::MemoryDevice;
use synack_tokio::{Config, Stack, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

fn config(seed: u8) -> Config {
    let mut config = Config::default();
    config.seed(Some([seed; 32]));
    config
}

#[tokio::test]
async fn info_shows_an_established_connection_after_an_exchange() {
    let (client_dev, server_dev) = MemoryDevice::pair();
    let client = Stack::new(config(1), client_dev, &[CLIENT]).unwrap();
    let server = Stack::new(config(2), server_dev, &[SERVER]).unwrap();
    let addr = SocketAddr::new(SERVER, 4000);
    let listener = TcpListener::bind(&server, addr).await.unwrap();
    let work = async {
        let (c, s) = tokio::join!(TcpStream::connect(&client, addr), listener.accept());
        let (mut c, mut s) = (c.unwrap(), s.unwrap().0);
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"world").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        let info = c.info().unwrap();
        assert_eq!(info.state, Some(synack_core::State::Established));
        assert!(info.snd_mss > 0 && info.snd_cwnd >= 1, "{info:?}");
        assert!(info.options & 1 != 0, "timestamps in use: {info:?}");
        assert!(info.rtt > Duration::ZERO || info.min_rtt == Duration::ZERO);
        assert_eq!(info.bytes_received, 5, "{info:?}");
        // The server's ACK of "hello" came with (or before) "world"; an active open counts
        // its SYN too, as Linux's `tcpi_bytes_acked` does.
        assert_eq!(info.bytes_acked, 6, "{info:?}");
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("the test did not finish in time");
}

#[tokio::test]
async fn memory_usage_follows_what_is_buffered() {
    let (client_dev, server_dev) = MemoryDevice::pair();
    let client = Stack::new(config(1), client_dev, &[CLIENT]).unwrap();
    let server = Stack::new(config(2), server_dev, &[SERVER]).unwrap();
    let addr = SocketAddr::new(SERVER, 4001);
    let listener = TcpListener::bind(&server, addr).await.unwrap();
    let work = async {
        let (c, s) = tokio::join!(TcpStream::connect(&client, addr), listener.accept());
        let (mut c, mut s) = (c.unwrap(), s.unwrap().0);
        let idle = server.memory_usage();
        assert_eq!((idle.connections, idle.buffered), (1, 0), "{idle:?}");
        assert_eq!(idle.cap, 1 << 30);
        assert!(!idle.pressure && idle.state > 0, "{idle:?}");
        // Unread data is held, and counted, until it is read.
        c.write_all(&[7u8; 50_000]).await.unwrap();
        while server.memory() < 50_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let held = server.memory_usage();
        assert_eq!(held.buffered, server.memory());
        assert!(held.allocated >= 50_000, "{held:?}");
        let mut buf = vec![0u8; 50_000];
        s.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|&b| b == 7));
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("the test did not finish in time");
}
