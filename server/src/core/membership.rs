//! ChangeMembership: one voter added to or removed from every shard's Raft group.
//!
//! Coordinated like DDL by the core that receives it: each shard's part is proposed by
//! that shard's leader as a one-voter configuration change (a follower passes its part
//! to the leader over the peer connection, as a frame only that shard runs), one shard
//! after another, and the reply lists every shard's voters afterwards. An added voter's
//! peer address travels in the change's context, so every replica's transport learns
//! where to reach it when it applies the change. A change that is already in effect
//! (the voter is there, or gone) answers at once: a retry is harmless.

use std::net::SocketAddr;
use std::rc::Rc;

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tern_protocol::frame::{FLAG_FORWARDED, Opcode, write_frame};
use tern_protocol::messages::*;
use tern_protocol::{ApiError, ErrorCode};

use super::{Core, OpResult, Outcome};
use crate::mesh::{Answer, Call};
use crate::reply;
use crate::topology::ShardId;

fn node_of(change: &MembershipChange) -> u64 {
    match change {
        MembershipChange::AddVoter { node, .. } | MembershipChange::RemoveVoter { node } => *node,
    }
}

impl Core {
    pub(super) fn change_membership(self: &Rc<Self>, id: u64, body: &[u8]) -> OpResult {
        let req = decode::<MembershipRequest>(body)?;
        if self.repl().is_none() {
            return Err(ApiError::validation(
                "ChangeMembership needs a replicated cluster: this node runs alone (--replicas 1)",
            )
            .into());
        }
        if node_of(&req.change) == 0 {
            return Err(ApiError::validation("node ids start at 1 (AZ a is node 1)").into());
        }
        if let MembershipChange::AddVoter { peer_address, .. } = &req.change
            && peer_address.parse::<SocketAddr>().is_err()
        {
            return Err(ApiError::validation(format!(
                "peer_address {peer_address:?} is not IP:PORT (the new node's first peer port)"
            ))
            .into());
        }
        let core = self.clone();
        if self.via.get().peer {
            // A follower's part: this shard's group only.
            return Ok(Outcome::Later(Box::pin(async move {
                let result = core.membership_on_shard(&req).await.map(|voters| {
                    encode(&MembershipResponse {
                        shards: vec![ShardVoters {
                            shard: core.shard_id(),
                            voters,
                        }],
                    })
                });
                reply::frame_to_vec(Opcode::ChangeMembership, id, result)
            })));
        }
        Ok(Outcome::Later(Box::pin(async move {
            let result = async {
                let mut resp = MembershipResponse::default();
                for shard in 0..core.topology.shard_count() as ShardId {
                    let voters = if core.is_me(shard) {
                        core.membership_on_shard(&req).await?
                    } else {
                        match core.mesh.call(shard, Call::Membership(req.clone())).await? {
                            Answer::Voters(v) => v?,
                            other => {
                                return Err(ApiError::internal(format!(
                                    "unexpected answer {other:?}"
                                )));
                            }
                        }
                    };
                    resp.shards.push(ShardVoters { shard, voters });
                }
                Ok(encode(&resp))
            }
            .await;
            reply::frame_to_vec(Opcode::ChangeMembership, id, result)
        })))
    }

    /// This shard's part: proposed here if this replica leads, else by the leader.
    /// Returns the shard's voters once the change is applied.
    pub(super) async fn membership_on_shard(
        self: &Rc<Self>,
        req: &MembershipRequest,
    ) -> Result<Vec<u64>, ApiError> {
        let repl = self
            .repl()
            .ok_or_else(|| ApiError::validation("this node does not replicate"))?;
        let node = node_of(&req.change);
        let add = matches!(req.change, MembershipChange::AddVoter { .. });
        if repl.voters().contains(&node) == add {
            return Ok(repl.voters());
        }
        if !repl.is_leader() {
            let body = encode(req);
            let mut frame = Vec::with_capacity(body.len() + 32);
            write_frame(
                &mut frame,
                Opcode::ChangeMembership,
                FLAG_FORWARDED,
                0,
                repl.shard(),
                &[&body],
            );
            let reply = self.to_leader(frame).await?;
            let resp: MembershipResponse = decode(super::reply_body(&reply)?)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            // Applied here too before answering, so this node's view agrees.
            self.read_barrier().await?;
            return Ok(resp
                .shards
                .into_iter()
                .next()
                .map(|s| s.voters)
                .unwrap_or_else(|| repl.voters()));
        }
        let mut single = ConfChangeSingle {
            node_id: node,
            ..ConfChangeSingle::default()
        };
        let context = match &req.change {
            MembershipChange::AddVoter { peer_address, .. } => {
                single.set_change_type(ConfChangeType::AddNode);
                peer_address.as_bytes().to_vec()
            }
            MembershipChange::RemoveVoter { .. } => {
                if repl.voters().len() <= 1 {
                    return Err(ApiError::validation(
                        "the last voter of a group cannot be removed",
                    ));
                }
                single.set_change_type(ConfChangeType::RemoveNode);
                Vec::new()
            }
        };
        let cc = ConfChangeV2 {
            changes: vec![single].into(),
            context: context.into(),
            ..ConfChangeV2::default()
        };
        let submitted = repl.submit(false, |g, token| g.propose_conf_change(token, cc))?;
        repl.kick();
        repl.resolution(submitted).await?;
        let voters = repl.voters();
        if voters.contains(&node) != add {
            return Err(ApiError::new(
                ErrorCode::InternalServerError,
                format!(
                    "shard {}: the membership change was applied but voters are {voters:?}",
                    repl.shard()
                ),
            ));
        }
        Ok(voters)
    }
}
