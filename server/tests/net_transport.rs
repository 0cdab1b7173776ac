//! The client-socket transports against an echo service, each scenario in both modes
//! (`uring`: the per-core io_uring ring; `glommio`: glommio's sockets).

#[path = "net_support/mod.rs"]
#[macro_use]
mod support;

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tern_server::net::{self, NetMode};

/// Runs each scenario as one test per mode.
macro_rules! both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $scenario() { crate::support::scenarios::$scenario(tern_server::net::NetMode::Uring) } )*
        }
        mod glommio_sockets {
            $( #[test] fn $scenario() { crate::support::scenarios::$scenario(tern_server::net::NetMode::Glommio) } )*
        }
    };
}

for_each_scenario!(both_modes);

#[test]
fn bind_listeners_shares_one_port_across_cores() {
    let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (shared, cores) = net::bind_listeners(host, 0, &[0, 0, 0], Duration::ZERO).unwrap();
    assert_eq!(cores.len(), 3);
    let mut shard_ports = HashSet::new();
    for core in &cores {
        assert_eq!(core.shared.local_addr().unwrap().port(), shared);
        assert_eq!(core.shard.local_addr().unwrap().port(), core.shard_port);
        assert!(shard_ports.insert(core.shard_port));
        assert_ne!(core.shard_port, shared);
    }
    // A fixed shared port is honoured, and a taken shard port is reported.
    let taken = cores[0].shard_port;
    let err = net::bind_listeners(host, 0, &[taken], Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}

#[test]
fn net_mode_parses() {
    assert_eq!("uring".parse::<NetMode>().unwrap(), NetMode::Uring);
    assert_eq!("glommio".parse::<NetMode>().unwrap(), NetMode::Glommio);
    let err = "epoll".parse::<NetMode>().unwrap_err().to_string();
    assert!(err.contains("uring") && err.contains("glommio"), "{err}");
    assert_eq!(NetMode::Glommio.to_string(), "glommio");
}
