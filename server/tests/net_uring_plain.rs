//! The uring transport on a ring created without SINGLE_ISSUER | DEFER_TASKRUN: the
//! fallback for kernels that refuse those flags, where completions arrive as ordinary
//! task work and are not flagged in the SQ ring. Every scenario, in its own process so
//! the switch affects no other test binary.

#[path = "net_support/mod.rs"]
#[macro_use]
mod support;

macro_rules! plain_ring {
    ($($scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $scenario() {
                tern_server::net::set_uring_setup_flags(false);
                crate::support::scenarios::$scenario(tern_server::net::NetMode::Uring)
            }
        )*
    };
}

for_each_scenario!(plain_ring);
