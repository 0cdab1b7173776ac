//! Starting and stopping a node: one pinned glommio executor per shard.
//!
//! The main thread binds every listener first (so the shared port exists before any
//! executor accepts on it), builds the topology, then starts one executor per core. Each
//! executor joins the two channel meshes, builds its [`Core`], serves the mesh and its
//! sockets, and returns when told to stop. Stopping is a message per core through a
//! blocking channel awaited with glommio's `spawn_blocking`, so no executor polls a flag.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::mpsc;

use anyhow::{Context, bail};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::core::{Core, CoreService};
use crate::mesh::{MESH_CHANNEL_CAPACITY, Mesh, Reply, Request, spawn_loops};
use crate::net::{self, NetMode};
use crate::service::{Shutdown, Wakeup};
use crate::topology::Topology;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub host: IpAddr,
    /// The shared port; shard k listens on `port + 1 + k` (all ephemeral when 0).
    pub port: u16,
    /// Number of shards (one executor each).
    pub shards: usize,
    /// Pin shard k to CPU `first_cpu + k`; `None` leaves executors unpinned.
    pub first_cpu: Option<usize>,
    pub net: NetMode,
    /// glommio's locked I/O memory per executor.
    pub io_memory_bytes: usize,
    pub node_id: String,
}

/// Stops a node from any thread.
#[derive(Debug, Clone)]
pub struct Stopper(Vec<mpsc::Sender<()>>);

impl Stopper {
    pub fn stop(&self) {
        for stop in &self.0 {
            let _ = stop.send(());
        }
    }
}

/// A started node.
pub struct Node {
    pub topology: Topology,
    stops: Vec<mpsc::Sender<()>>,
    handles: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
}

impl Node {
    pub fn start(config: &NodeConfig) -> anyhow::Result<Node> {
        if config.shards == 0 {
            bail!("a node needs at least one shard (--cores 1 or more)");
        }
        let shard_ports: Vec<u16> = (0..config.shards)
            .map(|k| {
                if config.port == 0 {
                    Ok(0)
                } else {
                    u16::try_from(config.port as usize + 1 + k)
                        .context("per-shard port above 65535: choose a lower --port")
                }
            })
            .collect::<anyhow::Result<_>>()?;
        let (shared_port, listeners) = net::bind_listeners(config.host, config.port, &shard_ports)
            .with_context(|| {
                format!(
                    "binding {}:{} and the per-shard ports",
                    config.host, config.port
                )
            })?;
        let shards = listeners
            .iter()
            .enumerate()
            .map(|(k, l)| (config.first_cpu.map_or(k, |c| c + k) as u32, l.shard_port))
            .collect();
        let topology = Topology::new(config.node_id.clone(), shared_port, shards);
        let requests = MeshBuilder::<Request, _>::full(config.shards, MESH_CHANNEL_CAPACITY);
        let replies = MeshBuilder::<Reply, _>::full(config.shards, MESH_CHANNEL_CAPACITY);
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for (k, listeners) in listeners.into_iter().enumerate() {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            stops.push(stop_tx);
            let placement = match config.first_cpu {
                Some(first) => Placement::Fixed(first + k),
                None => Placement::Unbound,
            };
            let topology = topology.clone();
            let requests = requests.clone();
            let replies = replies.clone();
            let mode = config.net;
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("tern-shard-{k}"))
                .io_memory(config.io_memory_bytes)
                .spawn(move || async move {
                    let (req_tx, req_rx) = requests
                        .join()
                        .await
                        .map_err(|_| anyhow::anyhow!("shard {k}: joining the request mesh failed"))?;
                    let (rep_tx, rep_rx) = replies
                        .join()
                        .await
                        .map_err(|_| anyhow::anyhow!("shard {k}: joining the reply mesh failed"))?;
                    let mesh = Mesh::new(k as u32, req_tx, rep_tx);
                    let core = Core::new(topology, mesh.clone());
                    let handler_core = core.clone();
                    spawn_loops(mesh, req_rx, rep_rx, move |call| handler_core.clone().handle_call(call));
                    let shutdown = Shutdown::default();
                    let trigger = shutdown.clone();
                    glommio::spawn_local(async move {
                        // Returns on a stop message or when the node handle is dropped.
                        let _ = glommio::executor().spawn_blocking(move || stop_rx.recv()).await;
                        trigger.trigger();
                    })
                    .detach();
                    net::serve(mode, listeners, Rc::new(CoreService(core)), Wakeup::new(), shutdown)
                        .await
                        .with_context(|| format!("shard {k}: serving sockets"))
                })
                .map_err(|e| {
                    anyhow::anyhow!(
                        "could not start the executor of shard {k}: {e}. If this is about locked \
                         memory, lower --io-memory or raise the limit (`ulimit -l`); if it is about \
                         CPU placement, use --cores with at most the CPUs this process may use or --no-pin"
                    )
                })?;
            handles.push(handle);
        }
        Ok(Node {
            topology,
            stops,
            handles,
        })
    }

    /// Asks every shard to stop (stop accepting, close connections).
    pub fn shutdown(&self) {
        self.stopper().stop();
    }

    /// A handle that can stop the node from another thread (e.g. a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stops.clone())
    }

    /// Waits for every shard to stop; the first error wins.
    pub fn join(self) -> anyhow::Result<()> {
        let Node { stops, handles, .. } = self;
        let mut first_err = None;
        for (k, h) in handles.into_iter().enumerate() {
            let result = match h.join() {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("shard {k} executor failed: {e}")),
            };
            if let Err(e) = result {
                // One shard failing stops the node: tell the others.
                for stop in &stops {
                    let _ = stop.send(());
                }
                first_err.get_or_insert(e);
            }
        }
        drop(stops);
        first_err.map_or(Ok(()), Err)
    }
}
